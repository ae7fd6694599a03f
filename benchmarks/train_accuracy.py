"""Accuracy spread of prompt tuning on a built-in dataset: several seeds and inits, same budget.

    .venv/bin/python benchmarks/train_accuracy.py [--steps 80] [--seeds 0 1] \
        [--inits labels "text:Classify the sentiment of this movie review as positive or negative."]

One run per (init, seed): `recipe.run_training` (what `softprompt train` runs) with
the shared defaults and the given step budget (no dev-based selection: the last prompt is scored, as in
`softprompt quickstart`), then accuracy on the whole dev split and on the first
--test-examples test examples. Prints one row per run and the mean and spread
per init. Its purpose is to tell a real difference between settings from seed
noise: on rotten-tomatoes one seed's dev accuracy can move by 5 points.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from softprompt.evaluate import encode_eval_set, evaluate
from softprompt.models import DEFAULT_MODEL, load_base_model
from softprompt.recipe import RunSpec, defaults, prepare, run_training, set_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--data", default="rotten-tomatoes")
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--inits", nargs="+", default=["labels"])
    parser.add_argument("--num-virtual-tokens", type=int, default=defaults()["num_virtual_tokens"])
    parser.add_argument("--test-examples", type=int, default=300, help="first N test examples (0 = all)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: one per core)")
    args = parser.parse_args()
    set_threads(args.threads)

    base = load_base_model(args.model)
    data = prepare(RunSpec(data=args.data))
    task, limit = data.task, data.max_input_tokens
    dev = encode_eval_set(base, task, data.dev, max_tokens=limit)
    test_examples = data.test[: args.test_examples] if args.test_examples else data.test
    test = encode_eval_set(base, task, test_examples, max_tokens=limit)
    print(f"{args.model} on {args.data}: {args.steps} steps, dev {len(dev)}, test {len(test)}")
    print(f"{'init':<40} {'seed':>4} {'dev acc':>8} {'test acc':>8} {'train s':>8}")

    results: dict[str, list[tuple[float, float]]] = {}
    for init in args.inits:
        for seed in args.seeds:
            settings = {
                "num_virtual_tokens": args.num_virtual_tokens,
                "init": init,
                "steps": args.steps,
                "checkpoint_every": args.steps + 1,  # no mid-run checkpoints: the folder is thrown away
                "seed": seed,
            }
            spec = RunSpec(data=args.data, max_dev_examples=0, settings=settings)
            with tempfile.TemporaryDirectory() as out:
                started = time.perf_counter()
                trained = run_training(spec, out, base, data=data, show_progress=False)
                seconds = time.perf_counter() - started
            prompt = trained.prompt.embeddings.detach()
            dev_acc = evaluate(base, task, prompt, dev.rows)["accuracy"]
            test_acc = evaluate(base, task, prompt, test.rows)["accuracy"]
            results.setdefault(init, []).append((dev_acc, test_acc))
            print(f"{init[:40]:<40} {seed:>4} {dev_acc:>8.1%} {test_acc:>8.1%} {seconds:>8.0f}", flush=True)

    print("\nmean (min-max) over seeds")
    for init, accs in results.items():
        devs, tests = [d for d, _ in accs], [t for _, t in accs]
        print(
            f"{init[:40]:<40} dev {statistics.mean(devs):.1%} ({min(devs):.1%}-{max(devs):.1%})  "
            f"test {statistics.mean(tests):.1%} ({min(tests):.1%}-{max(tests):.1%})"
        )


if __name__ == "__main__":
    main()
