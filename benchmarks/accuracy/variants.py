"""Task variants the defaults were not tuned on: a built-in task with one class made rare.

`sms-spam@spam=0.1` is sms-spam with a fixed 10% of its spam training (and dev) examples kept and
every other example as it is; the test split is untouched, so per-class recall is measured on the
task's own test distribution. A plain name is the built-in task itself.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from softprompt.data import Example, builtin_dataset
from softprompt.data.splits import Splits
from softprompt.errors import SoftPromptError

SUBSAMPLE_SEED = 0  # the same examples are kept in every cell, seed and method


def parse_variant(spec: str) -> tuple[str, str | None, float]:
    """'sms-spam@spam=0.1' -> ('sms-spam', 'spam', 0.1); 'trec' -> ('trec', None, 1.0)."""
    name, at, rest = spec.partition("@")
    if not at:
        return name, None, 1.0
    label, eq, share = rest.partition("=")
    try:
        fraction = float(share)
    except ValueError:
        fraction = -1.0
    if not eq or not label or not 0 < fraction <= 1:
        raise SoftPromptError(f"task {spec!r}: write NAME@LABEL=FRACTION, e.g. sms-spam@spam=0.1")
    labels = builtin_dataset(name).verbalizer
    if label not in labels:
        raise SoftPromptError(f"task {spec!r}: {name} has no label {label!r} (it has {', '.join(labels)})")
    return name, label, fraction


def subsample(examples: Sequence[Example], label: str, fraction: float) -> tuple[Example, ...]:
    """`examples` with a fixed `fraction` of those labelled `label` kept (at least one), in their order."""
    rare = [i for i, ex in enumerate(examples) if ex.output == label]
    kept = set(random.Random(SUBSAMPLE_SEED).sample(rare, max(1, round(fraction * len(rare)))))
    return tuple(ex for i, ex in enumerate(examples) if ex.output != label or i in kept)


def variant_splits(spec: str) -> Splits:
    name, label, fraction = parse_variant(spec)
    splits = builtin_dataset(name).load()
    if label is None:
        return splits
    return Splits(
        train=subsample(splits.train, label, fraction), dev=subsample(splits.dev, label, fraction), test=splits.test
    )
