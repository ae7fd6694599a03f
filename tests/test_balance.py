"""Class balance: imbalance is detected from the training labels and corrected by default (balance.py)."""

import math
import random

import pytest
import torch

from softprompt.balance import (
    DECISION_KEY,
    balance_note,
    balance_weights,
    balanced_task,
    class_counts,
    decision_bias,
    decision_note,
    dev_metric,
    is_imbalanced,
    task_with_decision,
)
from softprompt.data import Example
from softprompt.errors import SoftPromptError
from softprompt.evaluate import encode_eval_set, evaluate
from softprompt.infer import Predictor
from softprompt.prompts.meta import PromptMeta
from softprompt.prompts.methods import load_prompt
from softprompt.tasks import ClassifyTask, Encoded, GenerateTask, task_from_meta
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
    auto = balanced_task(TASK, rows, "auto")
    assert auto.class_weights == balance_weights([9, 1])
    assert auto.label_bias == pytest.approx((0.0, 0.5 * math.log(9)))  # the half the square-root weight leaves
    full = balanced_task(TASK, rows, "full")
    assert full.class_weights == balance_weights([9, 1], 1.0) and full.label_bias is None
    assert balanced_task(TASK, rows, "off") is TASK
    assert balanced_task(TASK, rows[:1] + rows[-1:], "auto") is TASK  # 1:1
    # The kept step is chosen by the metric the decision aims at: balanced accuracy under the balanced decision.
    assert dev_metric(auto) == "balanced_accuracy" and dev_metric(full) == dev_metric(TASK) == "accuracy"
    assert "imbalanced labels: loss weights pos 0.83, neg 2.50; balanced decision (label score bias neg +1.10)" in (
        balance_note(TASK, rows, "auto")
    )
    generate = GenerateTask("Q: {text}\nA:")
    assert balanced_task(generate, [Encoded((1,), (2,))], "auto") is generate
    assert TrainConfig().balance == "auto"


def test_decision_bias_is_zero_for_the_most_frequent_label_and_rarest_for_an_absent_one():
    assert decision_bias([100, 25, 0]) == pytest.approx((0.0, 0.5 * math.log(4), 0.5 * math.log(4)))
    assert decision_note(ClassifyTask("{text}", {"a": "a", "b": "b"}, label_bias=(0.0, 1.0))) == (
        "balanced decision (label score bias b +1.00)"
    )
    with pytest.raises(SoftPromptError, match="label bias"):
        ClassifyTask("{text}", {"a": "a", "b": "b"}, label_bias=(0.0,))


def test_the_bias_decides_the_answer_and_travels_in_the_metadata():
    task = ClassifyTask("{text}", {"a": "a", "b": "b"}, label_bias=(0.0, 1.0))
    scores = torch.tensor([[0.0, -0.5], [0.0, -1.5]])
    assert task._answers(scores) == ["b", "a"]
    meta = PromptMeta(
        task="classify", template="{text}", verbalizer={"a": "a", "b": "b"}, training={DECISION_KEY: {"b": 1.0}}
    )
    assert task_from_meta(meta).label_bias == (0.0, 1.0)
    plain = ClassifyTask("{text}", {"a": "a", "b": "b"})
    assert task_with_decision(plain, meta).label_bias == (0.0, 1.0)
    assert task_with_decision(plain, PromptMeta()) is plain
    assert (
        task_from_meta(PromptMeta(task="classify", template="{text}", verbalizer={"a": "a", "b": "b"})).label_bias
        is None
    )


def toy(n: int, rare_share: float, seed: int) -> list[Example]:
    """'good' reviews are pos, 'bad' ones neg; `rare_share` of them neg."""
    r = random.Random(seed)
    out = []
    for i in range(n):
        label = "neg" if r.random() < rare_share else "pos"
        word = "good " if label == "pos" else "bad "
        out.append(Example(word * r.randint(1, 2) + "x" * r.randint(0, 4), label, f"t:{i + 1}"))
    return out


def _toy_run(base, tmp_path, mode: str, *, dev: bool = False):
    rows, _ = encode_examples(base, TASK, toy(80, 0.1, seed=0))
    config = TrainConfig(
        method="prefix", num_virtual_tokens=4, steps=40, batch_size=16, lr=0.3, schedule="constant",
        max_grad_norm=None, balance=mode, eval_every=40, checkpoint_every=100,
    )  # fmt: skip
    held_out = encode_eval_set(base, TASK, toy(20, 0.1, seed=3)) if dev else None
    return train(base, TASK, rows, held_out, config, tmp_path / mode, show_progress=False)


def test_balancing_a_90_10_task_raises_the_minority_recall_and_off_keeps_the_plain_argmax(tiny_models, tmp_path):
    """On a 90/10 toy task the default (auto) answers the rare class; `--balance off` does not.

    A tiny random model cannot learn the inputs in a few steps, so without the decision rule every
    prompt answers the frequent class (the plain argmax: recall 0, the old behaviour); the loss weight
    lowers the rare class's loss on unseen examples, and the decision bias turns that into answers.
    """
    base = tiny_models("llama")
    test = toy(60, 0.5, seed=1)
    rare = encode_eval_set(base, TASK, [ex for ex in test if ex.output == "neg"])
    everything = encode_eval_set(base, TASK, test)
    loss, recall, reports = {}, {}, {}
    for mode in ("off", "auto"):
        result = _toy_run(base, tmp_path, mode)
        loss[mode] = evaluate(base, TASK, result.prompt, rare.rows)["loss"]
        reports[mode] = evaluate(base, TASK, result.prompt, everything.rows)
        recall[mode] = reports[mode]["per_label"]["neg"]["recall"]
    assert loss["auto"] < loss["off"] - 0.01, loss
    assert recall["auto"] > recall["off"], recall
    assert recall["off"] == 0.0  # off: the old behaviour, the frequent class everywhere
    assert reports["auto"][DECISION_KEY] == {"pos": 0.0, "neg": pytest.approx(0.5 * math.log(72 / 8), abs=0.5)}
    assert DECISION_KEY not in reports["off"]


def test_eval_predict_and_serve_decide_alike(tiny_models, tmp_path):
    """The stored decision rule is applied by every classify path: eval, and the predictor predict and serve use."""
    base = tiny_models("llama")
    result = _toy_run(base, tmp_path, "auto", dev=True)
    assert result.metric == "balanced_accuracy"  # the kept step: chosen by the metric the decision aims at
    prompt = load_prompt(tmp_path / "auto", base)
    assert prompt.meta.training[DECISION_KEY]["neg"] > 0
    examples = toy(40, 0.5, seed=2)
    rows = encode_eval_set(base, TASK, examples)  # a task built from the data, without the rule: eval adds it
    report = evaluate(base, TASK, prompt, rows.rows, keep_predictions=True)
    predictor = Predictor(base)
    predictor.add_prompt("p", prompt)
    served = predictor.classify([("p", ex.input) for ex in examples])
    assert [r.label for r in served] == report["predictions"]
    assert "neg" in report["predictions"]  # the rule is what made these agree on something
