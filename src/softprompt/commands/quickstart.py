"""`softprompt quickstart`: train a prompt on rotten-tomatoes with the default model, show what it gained.

Example:

    softprompt quickstart --steps 80 --out quickstart-prompt

Trains with the defaults of `softprompt train` except a shorter run (QUICK_STEPS
steps, no dev evaluation), then scores the untrained and the trained prompt on a
fixed subset of the test split (its first TEST_EXAMPLES reviews: the whole
split takes ~2 minutes per evaluation on a 2-core CPU) and prints a table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..errors import worded
from .options import add_model_options, device, quantize
from .train import add_threads_argument, flag

NAME = "quickstart"
HELP = "train and evaluate a prompt on the built-in rotten-tomatoes data with the default model"

DATASET = "rotten-tomatoes"
QUICK_STEPS = 80
TEST_EXAMPLES = 300


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="base model (default: smollm2-135m)")
    parser.add_argument("--steps", type=int, default=QUICK_STEPS, help="training steps (default: %(default)s)")
    parser.add_argument("--test-examples", type=int, default=TEST_EXAMPLES, help="first N test reviews to score (default: %(default)s; 0 = all 1,000)")  # fmt: skip
    parser.add_argument("--out", default="quickstart-prompt", help="prompt folder (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_threads_argument(parser)
    add_model_options(parser)


def run(args: argparse.Namespace) -> int:
    with worded(flag):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from ..evaluate import encode_eval_set, evaluate
    from ..fileio import check_output_path
    from ..models import DEFAULT_MODEL, load_base_model
    from ..prompts.files import CONFIG_FILE, WEIGHTS_FILE
    from ..quant import weight_count
    from ..recipe import RunSpec, prepare, run_training, set_threads

    start = time.perf_counter()
    check_output_path(args.out, flag="--out", folder=True)
    spec = RunSpec(data=DATASET, max_dev_examples=0, settings={"steps": args.steps})
    set_threads(args.threads)
    model = args.model or DEFAULT_MODEL
    base = load_base_model(model, device=device(args), quantize=quantize(args))
    data = prepare(spec)
    test_examples = data.test[: args.test_examples] if args.test_examples else data.test
    test = encode_eval_set(base, data.task, test_examples, max_tokens=data.max_input_tokens)

    def announce(run) -> None:
        print(
            f"{model}: training a prompt ({run.config.summary()}) on {DATASET} "
            f"({run.total_steps} steps x {run.config.batch_size} examples), then scoring {len(test)} test reviews"
        )

    trained = run_training(
        spec, args.out, base, data=data, show_progress=not args.quiet, base_model_name=model, on_start=announce
    )
    if trained.status == "interrupted":
        print(f"interrupted after {trained.steps} steps; the prompt so far is in {args.out}")
        return 130
    after = evaluate(base, data.task, trained.prompt, test.rows)
    before = evaluate(base, data.task, trained.prompt.with_weights(trained.prompt.initial), test.rows)
    files = sum((Path(args.out) / name).stat().st_size for name in (CONFIG_FILE, WEIGHTS_FILE))
    subset = "all" if len(test) == len(data.test) else f"first {len(test)} of {len(data.test)}"
    rows_out = [
        (f"test accuracy before training ({subset})", f"{before['accuracy']:.1%}"),
        (f"test accuracy after training ({subset})", f"{after['accuracy']:.1%}"),
        ("test macro-F1 after training", f"{after['macro_f1']:.3f}"),
        ("trainable parameters", f"{trained.prompt.num_parameters:,}"),
        ("frozen model parameters", f"{weight_count(base.model):,}"),
        ("prompt file size (PEFT files)", f"{files / 1024:.1f} KiB"),
        ("training time", f"{trained.wall_time_s:.0f} s ({trained.examples_seen:,} examples)"),
        ("total time", f"{time.perf_counter() - start:.0f} s"),
        ("prompt saved to", args.out),
    ]
    width = max(len(k) for k, _ in rows_out)
    for key, value in rows_out:
        print(f"  {key:<{width}}  {value}")
    return 0
