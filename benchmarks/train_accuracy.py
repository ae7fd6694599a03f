"""Accuracy of prompt tuning against LoRA and full fine-tuning: built-in tasks x methods x seeds x budgets.

    nice -n 10 .venv/bin/python benchmarks/train_accuracy.py --threads 1 \
        [--tasks rotten-tomatoes bbc-news sms-spam trec word-analogies] \
        [--methods prompt-tuning lora full-finetune "prompt-tuning[lr=0.03]"] \
        [--seeds 0 1 2] [--budgets 50 200 time:lora:50] [--out runs/accuracy]

Each cell (task, method, budget, seed) trains the method (softprompt's trainer for
prompts; `softprompt compare`'s loop for LoRA r=8 and full fine-tuning), evaluates
the first --dev-examples dev examples --evals times along the way (the dev curve;
the best weights there are kept, as `softprompt train` does), then scores the
WHOLE test split: accuracy, macro-F1, per-class recall (exact match and token F1
for text to text), and for classification two decision rules fitted without
retraining (see benchmarks/accuracy/scoring.py). A budget is optimiser steps
(batch --batch-size) or time:<method>:<steps>, the wall-clock time the reference
method needed for <steps>, converted into each method's steps by the two
methods' examples/s, measured interleaved on the task the first time they are
needed (OUT/rates/, with the load average before and after each round), so
load that comes and goes slows both alike. Prompt methods train with
--gradient-checkpointing off here (the same figures as the trainer's default
"selective", bit for bit, about a tenth faster): they keep every activation, as
LoRA's loop does, so a wall-clock budget does not charge them for saving memory.

Cells are saved under OUT/cells as they finish; rerunning the same command skips
them (a run that dies keeps what it finished). --jobs N runs N worker processes
over the cells (each claims a cell with a file lock before measuring it, so two
commands started separately on the same --out also share the work); on a
2-core machine `--jobs 2 --threads 1`. OUT/results.json and
OUT/results.md hold mean ± standard deviation over seeds and steps to plateau.
--plan lists each cell's steps (a wall-clock budget's, from the measured rates) and
whether it is saved, training nothing else.
"""

from __future__ import annotations

import argparse
import sys

from accuracy.paired import gaps_against, gaps_markdown, gold_indices
from accuracy.sweep import SweepConfig, all_cells, plan_sweep, run_sweep, run_sweep_parallel
from accuracy.table import bar_markdown, markdown, summarize

from softprompt.errors import SoftPromptError
from softprompt.fileio import write_json_atomic, write_text_atomic
from softprompt.models import load_base_model
from softprompt.recipe import set_threads


def main() -> int:
    defaults = SweepConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=defaults.model)
    parser.add_argument(
        "--tasks",
        nargs="+",
        default=list(defaults.tasks),
        help="built-in tasks, or NAME@LABEL=FRACTION: the task with that class cut to a fixed FRACTION of its "
        "training and dev examples (e.g. sms-spam@spam=0.1; accuracy/variants.py)",
    )
    parser.add_argument("--methods", nargs="+", default=list(defaults.methods))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(defaults.seeds))
    parser.add_argument("--budgets", nargs="+", default=list(defaults.budgets))
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--evals", type=int, default=defaults.evals, help="dev evaluations per run")
    parser.add_argument("--dev-examples", type=int, default=defaults.dev_examples)
    parser.add_argument("--test-examples", type=int, default=defaults.test_examples, help="0 = the whole test split")
    parser.add_argument("--out", default="runs/accuracy")
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=defaults.checkpoint_every,
        help="steps between a cell's checkpoints; a killed run resumes the cell from the last one",
    )
    parser.add_argument(
        "--reference",
        default="lora",
        help="the method every other is compared with, on the same test examples (a paired bootstrap interval)",
    )
    parser.add_argument(
        "--table-only", action="store_true", help="write the tables from the saved cells; train nothing"
    )
    parser.add_argument(
        "--plan",
        action="store_true",
        help="list each cell's steps and whether it is saved; train only the rates wall-clock budgets need",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: one per core)")
    parser.add_argument(
        "--jobs", type=int, default=1, help="worker processes sharing the cells (each loads the model; use --threads 1)"
    )
    args = parser.parse_args()
    try:
        config = SweepConfig(
            model=args.model,
            tasks=args.tasks,
            methods=args.methods,
            seeds=args.seeds,
            budgets=args.budgets,
            batch_size=args.batch_size,
            evals=args.evals,
            dev_examples=args.dev_examples,
            test_examples=args.test_examples,
            checkpoint_every=args.checkpoint_every,
        )
        if args.jobs < 1:
            raise SoftPromptError(f"--jobs must be at least 1, got {args.jobs}")
        if args.table_only:
            pass  # the tables below, from the saved cells
        elif args.plan:
            set_threads(args.threads)
            cells = plan_sweep(config, args.out, load_base_model(config.model), log=print)
            print(f"{sum(not c['saved'] for c in cells)} of {len(cells)} cells to measure")
            return 0
        elif args.jobs > 1:
            run_sweep_parallel(config, args.out, args.jobs, threads=args.threads)
        else:
            set_threads(args.threads)
            run_sweep(config, args.out, load_base_model(config.model))
    except SoftPromptError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cells = all_cells(args.out)
    rows = summarize(cells)
    gaps = gaps_against(cells, args.reference, gold_indices(cells))
    tested = f"the first {config.test_examples} test examples" if config.test_examples else "whole test split"
    table = markdown(rows, header=f"{config.model}: mean ± standard deviation over seeds; test = {tested}\n")
    if gaps:
        table += "\n" + gaps_markdown(gaps)
    bar = bar_markdown(rows, args.reference)
    if bar:
        table += "\n" + bar
    write_json_atomic(f"{args.out}/results.json", {"config": config.fingerprint(), "rows": rows, "gaps": gaps})
    write_text_atomic(f"{args.out}/results.md", table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
