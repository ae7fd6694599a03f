"""`softprompt quickstart`: train a prompt on rotten-tomatoes with the default model, show what it gained.

Trains with the defaults of `softprompt train` except a shorter run (QUICK_STEPS
steps, no dev evaluation), then scores the untrained and the trained prompt on a
fixed subset of the test split (its first TEST_EXAMPLES reviews: the whole
split takes ~2 minutes per evaluation on a 2-core CPU) and prints a table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .train import add_threads_argument

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


def run(args: argparse.Namespace) -> int:
    from ..data import builtin_dataset
    from ..evaluate import encode_eval_set, evaluate
    from ..models import DEFAULT_MODEL, load_base_model
    from ..prompt import CONFIG_FILE, WEIGHTS_FILE, PromptMeta
    from ..tasks import ClassifyTask
    from ..train import TrainConfig, encode_examples, train
    from .train import set_threads

    start = time.perf_counter()
    set_threads(args.threads)
    model = args.model or DEFAULT_MODEL
    base = load_base_model(model)
    dataset = builtin_dataset(DATASET)
    splits = dataset.load()
    task = ClassifyTask(dataset.template, dict(dataset.verbalizer))
    config = TrainConfig(steps=args.steps, max_input_tokens=dataset.max_input_tokens)
    rows, _ = encode_examples(base, task, splits.train, max_tokens=config.max_input_tokens)
    test_examples = splits.test[: args.test_examples] if args.test_examples else splits.test
    test = encode_eval_set(base, task, test_examples, max_tokens=config.max_input_tokens)
    print(
        f"{model}: training a {config.num_virtual_tokens}-token prompt on {DATASET} "
        f"({config.steps} steps x {config.batch_size} examples), then scoring {len(test)} test reviews"
    )

    trained = train(
        base, task, rows, None, config, args.out, show_progress=not args.quiet, meta=PromptMeta(base_model=model)
    )
    if trained.status == "interrupted":
        print(f"interrupted after {trained.steps} steps; the prompt so far is in {args.out}")
        return 130
    after = evaluate(base, task, trained.prompt.embeddings, test.rows)
    before = evaluate(base, task, trained.prompt.initial, test.rows)
    files = sum((Path(args.out) / name).stat().st_size for name in (CONFIG_FILE, WEIGHTS_FILE))
    subset = "all" if len(test) == len(splits.test) else f"first {len(test)} of {len(splits.test)}"
    rows_out = [
        (f"test accuracy before training ({subset})", f"{before['accuracy']:.1%}"),
        (f"test accuracy after training ({subset})", f"{after['accuracy']:.1%}"),
        ("test macro-F1 after training", f"{after['macro_f1']:.3f}"),
        ("trainable parameters", f"{trained.prompt.embeddings.numel():,}"),
        ("frozen model parameters", f"{sum(p.numel() for p in base.model.parameters()):,}"),
        ("prompt file size (PEFT files)", f"{files / 1024:.1f} KiB"),
        ("training time", f"{trained.wall_time_s:.0f} s ({trained.examples_seen:,} examples)"),
        ("total time", f"{time.perf_counter() - start:.0f} s"),
        ("prompt saved to", args.out),
    ]
    width = max(len(k) for k, _ in rows_out)
    for key, value in rows_out:
        print(f"  {key:<{width}}  {value}")
    return 0
