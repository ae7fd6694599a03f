"""Scores of a trained method: metrics on the whole test split, and decision rules calibrated without retraining.

Classification keeps each example's K label scores (log-probabilities up to a
per-row constant, `ClassifyTask.label_scores`), so the same scores give:
- `decision`: what the product answers: the argmax after the trained prompt's own decision
  bias (softprompt/balance.py; none for LoRA or a balanced run: then the argmax);
- `argmax`: the label the model finds most likely, with no bias;
- `prior`: argmax of log p(label | x) - log p(label in training), the decision that
  maximises balanced accuracy when the model is calibrated (logit adjustment, Menon
  et al. 2021): it stops a rare class from losing every close call;
- `dev_bias`: one additive bias per label, fitted on the dev examples to maximise their
  macro-F1, then applied to test.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from softprompt.evaluate import EvalRow, PromptInput, length_sorted_batches
from softprompt.forward import pad_batch, prompt_state
from softprompt.metrics import classification_report
from softprompt.models import BaseModel
from softprompt.tasks import ClassifyTask

BIAS_GRID = tuple(x / 4 for x in range(-16, 17))  # -4 .. 4 in steps of 0.25 (log-probability units)


@torch.no_grad()
def label_scores(
    model: BaseModel, task: ClassifyTask, prompt: PromptInput, rows: Sequence[EvalRow], *, batch_size: int = 32
) -> torch.Tensor:
    """[N, K] log-probabilities of the labels (normalised over the K labels), in the rows' order."""
    state = prompt_state(model, prompt)
    out = torch.empty(len(rows), len(task.labels))
    for index in length_sorted_batches([len(r.ids) for r in rows], batch_size):
        batch = pad_batch([rows[i].ids for i in index], model.pad_token_id, side="left", device=model.device)
        out[index] = task.label_scores(model, state, batch).float().log_softmax(-1).cpu()
    return out


def decide(scores: torch.Tensor, labels: Sequence[str], bias: Sequence[float] | None = None) -> list[str]:
    shifted = scores if bias is None else scores + torch.tensor(bias, dtype=scores.dtype)
    return [labels[i] for i in shifted.argmax(-1).tolist()]


def prior_bias(train_labels: Sequence[str], labels: Sequence[str]) -> list[float]:
    """-log of each label's training frequency (add-one smoothed): the `prior` rule's bias."""
    counts = [sum(1 for y in train_labels if y == label) + 1 for label in labels]
    total = sum(counts)
    return [-float(torch.tensor(c / total).log()) for c in counts]


def fit_dev_bias(scores: torch.Tensor, gold: Sequence[str], labels: Sequence[str], rounds: int = 3) -> list[float]:
    """Per-label biases maximising macro-F1 on (scores, gold): coordinate ascent over BIAS_GRID, label 0 fixed at 0."""
    bias = [0.0] * len(labels)

    def score(b: list[float]) -> float:
        return float(classification_report(decide(scores, labels, b), list(gold))["macro_f1"])

    best = score(bias)
    for _ in range(rounds):
        improved = False
        for k in range(1, len(labels)):
            for value in BIAS_GRID:
                trial = [*bias[:k], value, *bias[k + 1 :]]
                s = score(trial)
                if s > best + 1e-12:
                    best, bias, improved = s, trial, True
        if not improved:
            break
    return bias


def classification_scores(
    test_scores: torch.Tensor,
    test_gold: Sequence[str],
    dev_scores: torch.Tensor,
    dev_gold: Sequence[str],
    train_labels: Sequence[str],
    labels: Sequence[str],
    decision: Sequence[float] | None = None,
) -> dict[str, dict]:
    """Test report (accuracy, macro-F1, per-label precision/recall/F1) under each decision rule;
    `decision`: the trained method's own label bias (None: the argmax)."""
    rules = {
        "decision": None if decision is None else list(decision),
        "argmax": None,
        "prior": prior_bias(train_labels, labels),
        "dev_bias": fit_dev_bias(dev_scores, dev_gold, labels),
    }
    out = {}
    for rule, bias in rules.items():
        report = classification_report(decide(test_scores, labels, bias), list(test_gold))
        report["bias"] = bias
        out[rule] = report
    return out
