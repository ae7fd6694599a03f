"""Class balance: a rare class is not starved by a short training run.

Trained on imbalanced labels (one class a tenth of another), a prompt learns the frequent classes
first; within a short budget it may predict no example of the rare one. With `balance="auto"`
(TrainConfig's default) the trainer detects imbalance from the training labels' counts and weights
each example's loss by its class's inverse square-root frequency, scaled so the weights average 1
over the examples (the loss keeps its scale, and so does the LR). Square root rather than full
inverse frequency ("balanced" in scikit-learn): the full weight on a class of 1 in 60 multiplies its
examples' gradients by 30, and at a plain prompt's LR that swapped one starved class for another
(docs/accuracy.md: plain prompts with the full weight lost 2.2 points on sms-spam).

The weight alone does not reach the answers: a run keeps the weights with the best dev score, and a
dev split imbalanced like the training labels rewards answering the frequent class. So `auto` also
sets a decision rule: each label's score is raised by -1/2 log(its training frequency) before the
argmax. The square-root weight moves the prior the prompt learns from p(y) to about sqrt(p(y)); the
bias removes that remaining half, so loss and decision together give the balanced decision (logit
adjustment, Menon et al. 2021), split between them. The bias depends on the training counts only (no
dev fit: a rare class has a handful of dev examples), is stored in the prompt file's training
figures (`DECISION_KEY`), and every path that classifies with the prompt applies it: the dev
evaluations that pick the kept step, `eval`, `compare`, `predict` and `serve` (`task_with_decision`).
`full` weighs every class the same and leaves the decision alone; `off` changes neither.

The kept step is chosen to match: under the balanced decision, by dev balanced accuracy (mean
per-class recall) rather than accuracy, which on a dev split imbalanced like the training labels
again rewards answering the frequent class (`dev_metric`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from .tasks.base import Encoded, Task

if TYPE_CHECKING:
    from .prompts.meta import PromptMeta

# Imbalanced: the most frequent class has more than this many times the examples of the least frequent.
IMBALANCE_RATIO = 3.0
# The prompt file's training figures keep the decision bias under this key: {label: bias}.
DECISION_KEY = "decision_bias"


def class_counts(task: Task, rows: Sequence[Encoded]) -> list[int] | None:
    """Training examples per label (the task's label order); None for a task without labels."""
    if not task.has_labels:
        return None
    counts = Counter(r.target for r in rows)
    return [counts[i] for i in range(len(task.labels))]


def is_imbalanced(counts: Sequence[int]) -> bool:
    present = [c for c in counts if c]
    return len(present) > 1 and max(present) > IMBALANCE_RATIO * min(present)


def balance_weights(counts: Sequence[int], power: float = 0.5) -> tuple[float, ...]:
    """Per-label loss weights, inverse frequency to `power` (0.5: square root; 1: every class weighs the same),
    averaging 1 over the examples."""
    total, mass = sum(counts), sum(c ** (1 - power) for c in counts if c)
    return tuple(total / (mass * c**power) if c else 1.0 for c in counts)


def decision_bias(counts: Sequence[int], power: float = 0.5) -> tuple[float, ...]:
    """Per-label score bias: -`power` x log(training frequency), 0 for the most frequent label.

    A label without training examples gets the rarest present label's bias: nothing was learnt about
    it to correct for."""
    rarest = min(c for c in counts if c)
    most = max(counts)
    return tuple(power * math.log(most / (c or rarest)) for c in counts)


def balanced_task(task: Task, rows: Sequence[Encoded], mode: str) -> Task:
    """`task` with class weights (and, for "auto", the decision bias) when `mode` is not "off" and the
    labels of `rows` are imbalanced; else `task`. Weights the caller set already are kept."""
    counts = class_counts(task, rows)
    if mode == "off" or counts is None or getattr(task, "class_weights", None) is not None:
        return task
    if not is_imbalanced(counts):
        return task
    if mode == "full":
        return replace(task, class_weights=balance_weights(counts, 1.0))
    return replace(task, class_weights=balance_weights(counts, 0.5), label_bias=decision_bias(counts, 0.5))


def dev_metric(task: Task) -> str:
    """The dev metric that picks the kept step: balanced accuracy when the task decides balanced, else its own."""
    return "balanced_accuracy" if getattr(task, "label_bias", None) is not None else task.metric


def decision_figures(task: Task) -> dict[str, dict[str, float]]:
    """The task's decision bias as training figures for the prompt file ({} when it has none)."""
    bias = getattr(task, "label_bias", None)
    if bias is None:
        return {}
    return {DECISION_KEY: {label: round(b, 6) for label, b in zip(task.labels, bias, strict=True)}}


def stored_bias(task: Task, training: Mapping[str, object]) -> tuple[float, ...] | None:
    """The decision bias a prompt file's training figures hold for `task`'s labels; None when they hold none.

    Labels the figures do not name (the prompt is used with other labels) get no bias."""
    raw = training.get(DECISION_KEY)
    if not task.has_labels or not isinstance(raw, Mapping) or not raw:
        return None
    return tuple(float(raw.get(label, 0.0)) for label in task.labels)


def task_with_decision(task: Task, meta: PromptMeta | None) -> Task:
    """`task` deciding as the prompt with metadata `meta` was trained to: its stored bias, when it has one."""
    bias = None if meta is None else stored_bias(task, meta.training)
    return task if bias is None else replace(task, label_bias=bias)


def decision_note(task: Task) -> str:
    """What decision rule the task applies, for reports ("" for the plain argmax)."""
    bias = getattr(task, "label_bias", None)
    return "" if bias is None else decision_text(dict(zip(task.labels, bias, strict=True)))


def decision_text(bias: Mapping[str, float] | None) -> str:
    """A stored decision bias ({label: bias}, `DECISION_KEY`) in words ("" for none: the plain argmax)."""
    shown = ", ".join(f"{label} +{b:.2f}" for label, b in (bias or {}).items() if b)
    return f"balanced decision (label score bias {shown})" if shown else ""


def balance_note(task: Task, rows: Sequence[Encoded], mode: str) -> str:
    """What balancing a run does, for its start line and report ("" when it does nothing)."""
    weighted = balanced_task(task, rows, mode)
    if weighted is task or getattr(weighted, "class_weights", None) is None:
        return ""
    shown = ", ".join(f"{label} {w:.2f}" for label, w in zip(task.labels, weighted.class_weights, strict=True))
    decision = decision_note(weighted)
    return f" (imbalanced labels: loss weights {shown}{'; ' + decision if decision else ''})"
