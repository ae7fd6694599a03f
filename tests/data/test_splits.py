"""Train/dev/test splits (softprompt.data.splits)."""

import random

import pytest

from softprompt.data import (
    Example,
    Splits,
    split_examples,
)
from softprompt.errors import DataError, SoftPromptError


def make_examples(n: int) -> list[Example]:
    return [Example(f"text {i}", "x" if i % 3 else "y", f"f:{i + 1}") for i in range(n)]


def test_split_sizes_disjoint_and_complete():
    examples = make_examples(100)
    splits = split_examples(examples)
    assert isinstance(splits, Splits)
    assert (len(splits.train), len(splits.dev), len(splits.test)) == (80, 10, 10)
    together = splits.train + splits.dev + splits.test
    assert sorted(together, key=lambda e: e.where) == sorted(examples, key=lambda e: e.where)
    assert together != tuple(examples)  # actually shuffled


def test_split_is_deterministic_and_ignores_global_random_state():
    examples = make_examples(50)
    random.seed(1)
    first = split_examples(examples, dev_fraction=0.2, test_fraction=0.2, seed=3)
    random.seed(2)
    random.random()
    second = split_examples(examples, dev_fraction=0.2, test_fraction=0.2, seed=3)
    assert first == second
    other_seed = split_examples(examples, dev_fraction=0.2, test_fraction=0.2, seed=4)
    assert other_seed.test != first.test


def test_split_fractions_validated():
    examples = make_examples(10)
    for dev, test in ((-0.1, 0.1), (1.0, 0.0), (0.1, 1.5), (float("nan"), 0.1)):
        with pytest.raises(SoftPromptError, match="fraction must be in"):
            split_examples(examples, dev_fraction=dev, test_fraction=test)
    with pytest.raises(SoftPromptError, match="add up to less than 1"):
        split_examples(examples, dev_fraction=0.5, test_fraction=0.5)
    with pytest.raises(DataError, match="no examples to split"):
        split_examples([])


def test_split_tiny_data_keeps_train_non_empty():
    sizes = {}
    for n in (1, 2, 3, 4, 25):
        s = split_examples(make_examples(n), dev_fraction=0.1, test_fraction=0.1)
        sizes[n] = (len(s.train), len(s.dev), len(s.test))
    # A positive fraction gets at least one example once train can keep one.
    assert sizes == {1: (1, 0, 0), 2: (1, 0, 1), 3: (1, 1, 1), 4: (2, 1, 1), 25: (21, 2, 2)}
    no_dev = split_examples(make_examples(10), dev_fraction=0.0, test_fraction=0.3)
    assert (len(no_dev.train), len(no_dev.dev), len(no_dev.test)) == (7, 0, 3)
