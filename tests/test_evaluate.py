"""Evaluation: predictions independent of batching, equal to one-at-a-time scoring; reports."""

import pytest
import torch

from softprompt.data import Example
from softprompt.errors import SoftPromptError
from softprompt.evaluate import (
    better_on_dev,
    encode_eval_set,
    evaluate,
    length_sorted_batches,
    predict,
    predict_with_loss,
)
from softprompt.forward import pad_batch, prompt_state
from softprompt.tasks import ClassifyTask, GenerateTask

TASK = ClassifyTask("T: {text}\nA:", {"pos": " yes", "neg": " no", "other": "z"})
TEXTS = ["great", "awful stuff", "a long and winding review of a film", "ok", "meh meh", "x"]
GOLD = ["pos", "neg", "other", "pos", "neg", "other"]


def prompt_for(base, t=3):
    g = torch.Generator().manual_seed(0)
    return torch.rand(t, base.hidden_size, generator=g) - 0.5


@pytest.mark.parametrize("kind", ["gpt2", "llama", "gemma3", "t5"])
def test_predictions_match_one_by_one_scoring_whatever_the_batch_size(tiny_models, kind):
    base = tiny_models(kind)
    prompt = prompt_for(base)
    data = encode_eval_set(base, TASK, [Example(t, g, "x") for t, g in zip(TEXTS, GOLD)])
    with torch.no_grad():
        alone = []
        for row in data.rows:
            scores = TASK.label_scores(base, prompt_state(base, prompt), pad_batch([row.ids], base.pad_token_id))
            alone.append(TASK.labels[int(scores.argmax())])
    assert predict(base, TASK, prompt, data.rows, batch_size=4) == alone
    assert predict(base, TASK, prompt, data.rows, batch_size=1) == alone
    report = evaluate(base, TASK, prompt, data.rows, batch_size=3)
    assert report["n"] == 6
    assert report["accuracy"] == pytest.approx(sum(a == g for a, g in zip(alone, GOLD)) / 6)
    assert 0 <= report["macro_f1"] <= 1


def test_bare_model_and_truncation_count(tiny_models):
    base = tiny_models("llama")
    data = encode_eval_set(base, TASK, [Example(t, g, "x") for t, g in zip(TEXTS, GOLD)], max_tokens=12)
    assert data.truncated == sum(len(t) > 12 - len("T:\nA:") - 1 for t in TEXTS)
    assert all(len(r.ids) <= 12 for r in data.rows)
    assert evaluate(base, TASK, None, data.rows)["n"] == 6


@pytest.mark.parametrize("kind", ["llama", "t5"])
def test_generate_report(tiny_models, kind):
    base = tiny_models(kind)
    task = GenerateTask("Q: {text}\nA:")
    data = encode_eval_set(base, task, [Example("hi", "hello", "x"), Example("bye", "see you", "y")])
    report = evaluate(base, task, prompt_for(base), data.rows)
    assert report["n"] == 2 and {"exact_match", "token_f1"} <= set(report)


def test_length_sorted_batches_cover_every_row_once():
    lengths = [5, 1, 9, 3, 3, 7, 2]
    batches = length_sorted_batches(lengths, 3)
    assert sorted(i for b in batches for i in b) == list(range(7))
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(lengths)


def test_a_row_past_the_context_with_the_prompt_is_refused_naming_the_example(tiny_models):
    base = tiny_models("gpt2")  # learned positions: past the context torch would fail with an IndexError
    context = base.family.context_length
    long = Example("good " * 5000, "pos", "test.jsonl:3")
    data = encode_eval_set(base, TASK, [Example("ok", "pos", "test.jsonl:1"), long])
    assert data.rows[1].where == "test.jsonl:3" and len(data.rows[1].ids) == context
    answer = TASK.answer_tokens(base)
    with pytest.raises(SoftPromptError, match=rf"test.jsonl:3: .*at most {context - 3 - answer}\)"):
        evaluate(base, TASK, prompt_for(base, t=3), data.rows)
    assert evaluate(base, TASK, None, data.rows[:1])["n"] == 1
    fits = encode_eval_set(base, TASK, [long], max_tokens=context - 3 - answer)
    assert evaluate(base, TASK, prompt_for(base, t=3), fits.rows)["n"] == 1


def test_the_report_has_the_dev_loss_the_training_loss_gives(tiny_models):
    """Classification's "loss" is the mean cross-entropy over the labels: the trainer's loss, unweighted."""
    base = tiny_models("llama")
    prompt = prompt_for(base)
    data = encode_eval_set(base, TASK, [Example(t, g, "x") for t, g in zip(TEXTS, GOLD)])
    predictions, losses = predict_with_loss(base, TASK, prompt, data.rows, batch_size=4)
    assert predictions == predict(base, TASK, prompt, data.rows, batch_size=1)
    rows = [TASK.encode(base, t, target=g) for t, g in zip(TEXTS, GOLD)]
    batch, target = TASK.collate(base, rows)
    with torch.no_grad():
        whole = TASK.loss(base, prompt_state(base, prompt), batch, target)
    assert sum(losses) / len(losses) == pytest.approx(whole.item(), rel=1e-5)
    assert evaluate(base, TASK, prompt, data.rows, batch_size=3)["loss"] == pytest.approx(whole.item(), rel=1e-5)
    # A gold outside the labels has no loss: the report leaves "loss" out rather than guess it.
    odd = encode_eval_set(base, TASK, [Example("great", "pos", "x"), Example("ok", "unheard-of", "y")])
    assert predict_with_loss(base, TASK, prompt, odd.rows)[1] is None
    assert "loss" not in evaluate(base, TASK, prompt, odd.rows)


def test_generation_reports_no_loss(tiny_models):
    base = tiny_models("llama")
    task = GenerateTask("Q: {text}\nA:")
    data = encode_eval_set(base, task, [Example("hi", "hello", "x")])
    assert "loss" not in evaluate(base, task, prompt_for(base), data.rows)


def test_selection_rule_breaks_a_tie_on_the_dev_loss():
    assert better_on_dev(0.5, None, None, None)  # the first evaluation is the best so far
    assert better_on_dev(0.9, 2.0, 0.8, 0.1) and not better_on_dev(0.7, 0.01, 0.8, 0.1)
    assert better_on_dev(1.0, 0.2, 1.0, 0.3)  # a saturated dev set: the lower loss wins
    assert not better_on_dev(1.0, 0.3, 1.0, 0.3)  # an exact tie keeps the earlier step
    assert not better_on_dev(1.0, 0.2, 1.0, None) and not better_on_dev(1.0, None, 1.0, 0.3)  # no loss, no tie-break
