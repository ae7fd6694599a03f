"""Class balance: a rare class is not starved by a short training run.

Trained on imbalanced labels (one class a tenth of another), a prompt learns the frequent classes
first; within a short budget it may predict no example of the rare one. With `balance="auto"`
(TrainConfig's default) the trainer detects imbalance from the training labels' counts and weights
each example's loss by its class's inverse square-root frequency, scaled so the weights average 1
over the examples (the loss keeps its scale, and so does the LR). Square root rather than full
inverse frequency ("balanced" in scikit-learn): the full weight on a class of 1 in 60 multiplies its
examples' gradients by 30, and at a plain prompt's LR that swapped one starved class for another
(docs/accuracy.md: plain prompts with the full weight lost 2.2 points on sms-spam).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from .tasks import Encoded, Task

# Imbalanced: the most frequent class has more than this many times the examples of the least frequent.
IMBALANCE_RATIO = 3.0


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


def balanced_task(task: Task, rows: Sequence[Encoded], mode: str) -> Task:
    """`task` with class weights when `mode` is "auto" and the labels of `rows` are imbalanced; else `task`.
    Weights the caller set already are kept."""
    counts = class_counts(task, rows)
    if mode == "off" or counts is None or getattr(task, "class_weights", None) is not None:
        return task
    power = 1.0 if mode == "full" else 0.5
    return replace(task, class_weights=balance_weights(counts, power)) if is_imbalanced(counts) else task


def balance_note(task: Task, rows: Sequence[Encoded], mode: str) -> str:
    """What balancing a run does, for its start line and report ("" when it does nothing)."""
    weighted = balanced_task(task, rows, mode)
    if weighted is task or getattr(weighted, "class_weights", None) is None:
        return ""
    shown = ", ".join(f"{label} {w:.2f}" for label, w in zip(task.labels, weighted.class_weights, strict=True))
    return f" (imbalanced labels: loss weights {shown})"
