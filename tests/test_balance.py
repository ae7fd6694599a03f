"""Class balance: imbalance is detected from the training labels and corrected by default (balance.py)."""

import random

import pytest

from softprompt.balance import balance_note, balance_weights, balanced_task, class_counts, is_imbalanced
from softprompt.data import Example
from softprompt.evaluate import encode_eval_set, evaluate
from softprompt.tasks import ClassifyTask, Encoded, GenerateTask
from softprompt.train import TrainConfig, encode_examples, train

TASK = ClassifyTask("Review: {text}\nSentiment:", {"pos": "y", "neg": "n"})


def test_weights_average_one_over_the_examples_and_favour_the_rare_class():
    counts = [90, 10]
    weights = balance_weights(counts)
    assert sum(c * w for c, w in zip(counts, weights, strict=True)) == pytest.approx(sum(counts))
    assert weights[1] / weights[0] == pytest.approx(3.0)  # square root of the 9:1 ratio
    full = balance_weights(counts, power=1.0)
    assert full[1] / full[0] == pytest.approx(9.0) and sum(c * w for c, w in zip(counts, full, strict=True)) == 100
    assert is_imbalanced([90, 10]) and not is_imbalanced([60, 40]) and not is_imbalanced([5, 0])


def test_auto_weights_only_imbalanced_labels_and_off_never():
    rows = [Encoded((1,), 0)] * 9 + [Encoded((1,), 1)]
    assert class_counts(TASK, rows) == [9, 1]
    assert balanced_task(TASK, rows, "auto").class_weights == balance_weights([9, 1])
    assert balanced_task(TASK, rows, "off") is TASK
    assert balanced_task(TASK, rows[:1] + rows[-1:], "auto") is TASK  # 1:1
    assert "imbalanced labels: loss weights pos 0.83, neg 2.50" in balance_note(TASK, rows, "auto")
    generate = GenerateTask("Q: {text}\nA:")
    assert balanced_task(generate, [Encoded((1,), (2,))], "auto") is generate
    assert TrainConfig().balance == "auto"


def toy(n: int, rare_share: float, seed: int) -> list[Example]:
    """'good' reviews are pos, 'bad' ones neg; `rare_share` of them neg."""
    r = random.Random(seed)
    out = []
    for i in range(n):
        label = "neg" if r.random() < rare_share else "pos"
        word = "good " if label == "pos" else "bad "
        out.append(Example(word * r.randint(1, 2) + "x" * r.randint(0, 4), label, f"t:{i + 1}"))
    return out


def test_balancing_a_90_10_task_moves_the_decision_towards_the_minority(tiny_models, tmp_path):
    """On a 90/10 toy task the default (auto) trains a prompt that answers the rare class more readily.

    A tiny random model cannot learn the inputs in a few steps, so within a test's budget every
    prompt still answers the frequent class (recall 0 either way; the smollm2-135m figures are in
    benchmarks/results/recipe/); what the correction changes, and what this checks, is the rare
    class's loss on unseen examples, which falls, and its recall, which does not.
    """
    base = tiny_models("llama")
    rows, _ = encode_examples(base, TASK, toy(80, 0.1, seed=0))
    test = toy(60, 0.5, seed=1)
    rare = encode_eval_set(base, TASK, [ex for ex in test if ex.output == "neg"])
    everything = encode_eval_set(base, TASK, test)
    loss, recall = {}, {}
    for mode in ("off", "auto"):
        config = TrainConfig(
            method="prefix", num_virtual_tokens=4, steps=40, batch_size=16, lr=0.3, schedule="constant",
            max_grad_norm=None, balance=mode, eval_every=100, checkpoint_every=100,
        )  # fmt: skip
        result = train(base, TASK, rows, None, config, tmp_path / mode, show_progress=False)
        loss[mode] = evaluate(base, TASK, result.prompt, rare.rows)["loss"]
        recall[mode] = evaluate(base, TASK, result.prompt, everything.rows)["per_label"]["neg"]["recall"]
    assert loss["auto"] < loss["off"] - 0.01, loss
    assert recall["auto"] >= recall["off"], recall
