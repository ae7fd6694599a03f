"""Mixed-prompt batches: 10 prompts (T = 10, 20, ..., 100), 320 inputs, one batch stream vs grouping by prompt.

Mixed: one Predictor.classify call over all 320 (prompt, text) requests; rows
of different prompts share forward passes (prefixes stacked, left-padded, masked).
Grouped: one call per prompt (each batch holds one prompt). Both are timed and
their outputs must be identical (same labels; probabilities to 1e-4).

    .venv/bin/python benchmarks/mixed_prompts.py               # 320 inputs, smollm2-135m
    .venv/bin/python benchmarks/mixed_prompts.py --n 100       # quicker
"""

from __future__ import annotations

import argparse
import time

import torch

from softprompt.data import BUILTIN_DATASETS
from softprompt.infer import InputError, Predictor
from softprompt.models import load_base_model
from softprompt.prompts.meta import PromptMeta
from softprompt.prompts.plain import SoftPrompt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--prompts", type=int, default=10)
    parser.add_argument("--n", type=int, default=320, help="inputs (default 320)")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    base = load_base_model(args.model)
    dataset = BUILTIN_DATASETS["rotten-tomatoes"]
    texts = [e.input for e in dataset.load().test[: args.n]]
    predictor = Predictor(base, max_batch_size=args.batch_size)
    names = [f"p{i}" for i in range(args.prompts)]
    for i, name in enumerate(names):
        meta = PromptMeta(task="classify", template=dataset.template, verbalizer=dict(dataset.verbalizer))
        t = 10 * (i + 1)
        prompt = SoftPrompt.initialize(base, t, "vocab", seed=i, meta=meta)
        predictor.add_prompt(name, prompt)
        predictor.state(name)  # keys/values computed once, outside both timings
    requests = [(names[i % len(names)], text) for i, text in enumerate(texts)]

    start = time.perf_counter()
    mixed = predictor.classify(requests)
    mixed_s = time.perf_counter() - start

    grouped: list = [None] * len(requests)
    start = time.perf_counter()
    for name in names:
        index = [i for i, (n, _) in enumerate(requests) if n == name]
        for i, result in zip(index, predictor.classify([requests[i] for i in index])):
            grouped[i] = result
    grouped_s = time.perf_counter() - start

    answered = [(a, b) for a, b in zip(mixed, grouped) if not isinstance(a, InputError)]
    assert all(a == b for a, b in zip(mixed, grouped) if isinstance(a, InputError))  # e.g. too long: same error
    for a, b in answered:
        assert a.label == b.label, (a, b)
        assert all(abs(a.probs[k] - b.probs[k]) < 1e-4 for k in a.probs), (a, b)
    worst = max(abs(a.probs[k] - b.probs[k]) for a, b in answered for k in a.probs)
    n = len(requests)
    print(f"model {args.model}, {len(names)} prompts (T=10..{10 * len(names)}), {n} inputs, batch {args.batch_size}")
    print(f"mixed stream : {mixed_s:6.1f} s  {n / mixed_s:6.1f} inputs/s")
    print(f"by prompt    : {grouped_s:6.1f} s  {n / grouped_s:6.1f} inputs/s")
    print(
        f"ratio grouped/mixed time {grouped_s / mixed_s:.2f}x; outputs identical (labels equal, max prob diff {worst:.1e})"
    )
    if len(answered) < n:
        print(f"{n - len(answered)} inputs refused alike by both (too long for the model's context)")
    print(f"prompt cache: {predictor.cache_stats}; {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
