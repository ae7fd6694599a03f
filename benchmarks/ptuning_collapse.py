"""Why P-tuning (a plain prompt through an MLP) predicted no example of a whole class after 50 steps.

Trains `--method prompt --reparam mlp` on a built-in task under variants of the MLP's start and LR, and
scores the first `--test` test examples (accuracy, macro-F1, per-class recall). Each variant's result is
a JSON file in --out, skipped when present, so an interrupted run continues.

    python benchmarks/ptuning_collapse.py --data trec --steps 50 --out benchmarks/results/recipe/ptuning
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from softprompt.evaluate import encode_eval_set, evaluate
from softprompt.fileio import write_text_atomic
from softprompt.models import load_base_model
from softprompt.prompts import reparam
from softprompt.recipe import RunSpec, prepare, run_training

# variant -> (where the MLP's output is added: the init's rows or their mean, the LR (None: the default))
VARIANTS = {
    "mean-start": ("mean", None),  # the old start: every slot at the init's mean row
    "init-start": ("init", None),  # the fix: every slot at its own init row
    "mean-start-lr0.01": ("mean", 0.01),
    "init-start-lr0.01": ("init", 0.01),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--data", default="trec")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--test", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    parser.add_argument("--out", type=Path, required=True, help="one JSON file per variant (kept)")
    parser.add_argument("--work", type=Path, default=Path("runs/ptuning"), help="the trained prompts (thrown away)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    base = load_base_model(args.model)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.variants:
        cell = args.out / f"{args.data}-{name}-seed{args.seed}.json"
        if cell.exists():
            continue
        start, lr = VARIANTS[name]
        # The start under test: the fix (reparam._offset) or the old one, every slot at the init's mean row.
        reparam._offset = (lambda s: s) if start == "init" else (lambda s: s.mean(dim=0).expand_as(s).clone())
        settings = {"method": "prompt", "reparam": "mlp", "steps": args.steps, "seed": args.seed}
        if lr is not None:
            settings["lr"] = lr
        spec = RunSpec(data=args.data, max_dev_examples=0, settings={**settings, "checkpoint_every": args.steps})
        data = prepare(spec)
        result = run_training(spec, args.work / cell.stem, base, data=data, show_progress=False)
        rows = encode_eval_set(base, data.task, data.test[: args.test], max_tokens=data.max_input_tokens)
        report = evaluate(base, data.task, result.prompt, rows.rows)
        out = {"variant": name, "data": args.data, "steps": args.steps, "seed": args.seed, "test": len(rows), **report}
        write_text_atomic(cell, json.dumps(out, indent=1, sort_keys=True))
        recall = {k: round(v["recall"], 2) for k, v in report.get("per_label", {}).items()}
        print(name, f"acc {report['accuracy']:.3f} macro-F1 {report['macro_f1']:.3f} recall {recall}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
