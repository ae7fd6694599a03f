"""The paired bootstrap gap between two methods scored on the same test examples."""

from __future__ import annotations

import random

import pytest
import torch

from softprompt.bootstrap import macro_f1_of_draws, paired_gap, paired_label_gap
from softprompt.metrics import macro_f1


def test_macro_f1_of_draws_follows_the_reports_conventions():
    rng = random.Random(0)
    gold = [rng.choice([0, 1, 2]) for _ in range(40)]  # label 3 is never gold ...
    pred = [rng.choice([0, 1, 3]) for _ in range(40)]  # ... and 2 never predicted; 4 is neither
    names = "abcde"
    draws = torch.tensor([list(range(40)), [rng.randrange(40) for _ in range(40)]])
    got = macro_f1_of_draws(torch.tensor([pred]), torch.tensor(gold), draws, 5)
    for row, draw in enumerate(draws.tolist()):
        expected = macro_f1([names[pred[i]] for i in draw], [names[gold[i]] for i in draw])
        assert got[0, row].item() == pytest.approx(expected)


def test_the_gap_is_the_difference_of_seed_means_and_its_interval_holds_it():
    gold = [i % 3 for i in range(1000)]
    reference = [g if i % 10 else (g + 1) % 3 for i, g in enumerate(gold)]  # 90% right
    better = [g if i % 20 else (g + 1) % 3 for i, g in enumerate(gold)]  # 95% right
    # Two seeds of the method: one better, one as the reference: its mean is 92.5%.
    gap = paired_gap(torch.tensor([better, reference]), torch.tensor([reference]), torch.tensor(gold), 3)
    acc = gap["accuracy"]
    assert acc["gap"] == pytest.approx(0.025)
    assert 0 < acc["low"] < 0.025 < acc["high"] < 0.05  # the examples it wins on are few: the interval is wide
    assert gap["macro_f1"]["low"] < gap["macro_f1"]["gap"] < gap["macro_f1"]["high"]

    same = paired_gap(torch.tensor([reference]), torch.tensor([reference]), torch.tensor(gold), 3)
    assert same["accuracy"] == {"gap": 0.0, "low": 0.0, "high": 0.0}
    assert same["macro_f1"] == {"gap": 0.0, "low": 0.0, "high": 0.0}


def test_the_interval_is_the_same_for_the_same_seed_and_refuses_mismatched_scores():
    gold = torch.tensor([i % 2 for i in range(200)])
    a = torch.tensor([[(i // 7) % 2 for i in range(200)]])
    b = torch.tensor([[(i // 5) % 2 for i in range(200)]])
    assert paired_gap(a, b, gold, 2, resamples=300) == paired_gap(a, b, gold, 2, resamples=300)
    with pytest.raises(ValueError, match="200 gold"):
        paired_gap(a, b[:, :100], gold, 2)


def test_label_names_are_compared_as_the_indices_they_name():
    gold = ["yes", "no", "yes", "no", "maybe"]  # "maybe" is not one of the task's labels
    a = [["yes", "no", "yes", "no", "no"]]
    b = [["yes", "yes", "yes", "yes", "no"]]
    named = paired_label_gap(a, b, gold, ["no", "yes"], resamples=100)
    by_index = paired_gap(
        torch.tensor([[1, 0, 1, 0, 0]]),
        torch.tensor([[1, 1, 1, 1, 0]]),
        torch.tensor([1, 0, 1, 0, 2]),
        3,
        resamples=100,
    )
    assert named == by_index
    assert named["accuracy"]["gap"] == pytest.approx(0.4)
    assert named["macro_f1"]["gap"] == pytest.approx(macro_f1(a[0], gold) - macro_f1(b[0], gold))
