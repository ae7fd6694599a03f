"""Train/dev/test splits: deterministic shuffles with their own random generator."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from softprompt.data.examples import Example
from softprompt.errors import DataError, SoftPromptError


@dataclass(frozen=True)
class Splits:
    train: tuple[Example, ...]
    dev: tuple[Example, ...]
    test: tuple[Example, ...]


def split_examples(
    examples: Sequence[Example],
    *,
    dev_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> Splits:
    """Shuffle with `random.Random(seed)` and cut: test first, then dev, the rest is train.

    Deterministic given (examples, seed), whatever the global RNG state. A positive fraction
    gets at least one example when there are enough; train is never empty.
    """
    for flag, fraction in (("dev", dev_fraction), ("test", test_fraction)):
        if not 0.0 <= fraction < 1.0:
            raise SoftPromptError(f"{flag} fraction must be in [0, 1), got {fraction}")
    if dev_fraction + test_fraction >= 1.0:
        raise SoftPromptError(
            f"dev fraction {dev_fraction} + test fraction {test_fraction} leave no training "
            "data; they must add up to less than 1"
        )
    if not examples:
        raise DataError("no examples to split")
    n = len(examples)
    n_test, n_dev = _split_size(n, test_fraction), _split_size(n, dev_fraction)
    while n_test + n_dev >= n:  # tiny data: shrink the larger held-out split first,
        if n_dev >= n_test:  # and on a tie dev, since the test score is what gets reported
            n_dev -= 1
        else:
            n_test -= 1
    return shuffle_split(examples, n_test=n_test, n_dev=n_dev, seed=seed)


def _split_size(n: int, fraction: float) -> int:
    return max(1, round(n * fraction)) if fraction > 0 else 0


def shuffle_split(examples: Sequence[Example], *, n_test: int, n_dev: int, seed: int) -> Splits:
    shuffled = list(examples)
    random.Random(seed).shuffle(shuffled)  # own generator: global random state is irrelevant
    return Splits(
        train=tuple(shuffled[n_test + n_dev :]),
        dev=tuple(shuffled[n_test : n_test + n_dev]),
        test=tuple(shuffled[:n_test]),
    )
