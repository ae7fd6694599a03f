"""Score a prompt on labelled examples with the task's own metrics (accuracy and macro-F1, exact match and token F1, ...).

The prompt's state is computed once for the whole evaluation and shared by
every batch; inputs are sorted by length so batches carry little padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .balance import decision_figures, task_with_decision
from .data import Example
from .forward import PromptSource, PromptState, pad_batch, prompt_state
from .models import BaseModel
from .tasks import Encoded, Task
from .tasks.chat import check_placement

PromptInput = PromptSource | PromptState | torch.Tensor | None


@dataclass(frozen=True)
class EvalRow:
    ids: tuple[int, ...]
    gold: str
    where: str = ""  # file:line of the example, for errors

    def __len__(self) -> int:  # tokens the row takes, as `Encoded` counts them (no target here)
        return len(self.ids)


@dataclass(frozen=True)
class EvalSet:
    rows: tuple[EvalRow, ...]
    truncated: int  # inputs cut to fit max_tokens

    def __len__(self) -> int:
        return len(self.rows)


def encode_eval_set(
    base: BaseModel, task: Task, examples: Sequence[Example], *, max_tokens: int | None = None, truncate: str = "left"
) -> EvalSet:
    encoded = [task.encode(base, ex.input, max_tokens=max_tokens, truncate=truncate) for ex in examples]
    rows = tuple(EvalRow(e.ids, ex.output, ex.where) for e, ex in zip(encoded, examples))
    return EvalSet(rows, sum(e.truncated for e in encoded))


def prompt_room(base: BaseModel, task: Task, rows: Sequence[EvalRow | Encoded]) -> int:
    """Positions the context leaves for a prompt beside the longest row, its target and the answer."""
    return base.family.context_length - max((len(r) for r in rows), default=0) - task.answer_tokens(base)


def check_rows_fit(base: BaseModel, task: Task, rows: Sequence[EvalRow | Encoded], virtual_tokens: int) -> None:
    """Refuse, naming the example, a row that with the prompt (and a label's later tokens) is past the context.

    Past it a learned-position model (GPT-2) fails deep inside torch and a rotary one silently extrapolates.
    A training row (`Encoded`) counts its target's tokens too.
    """
    if not rows or prompt_room(base, task, rows) >= virtual_tokens:
        return
    index = max(range(len(rows)), key=lambda i: len(rows[i]))
    longest = rows[index]
    answer = len(longest) - len(longest.ids) + task.answer_tokens(base)
    where = longest.where or f"example {index + 1}"
    base.family.check_fits(len(longest.ids) + answer, virtual_tokens, where=where, answer=answer)


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def predict(
    base: BaseModel, task: Task, prompt: PromptInput, rows: Sequence[EvalRow], *, batch_size: int = 32
) -> list[str]:
    """The task's answer (a label, a generated text, ...) per row, in the rows' order.

    `prompt`: a prompt of any method, its state, a plain prompt's [T, d] tensor, or None (the bare model).
    """
    return predict_with_loss(base, task, prompt, rows, batch_size=batch_size)[0]


@torch.no_grad()
def predict_with_loss(
    base: BaseModel, task: Task, prompt: PromptInput, rows: Sequence[EvalRow], *, batch_size: int = 32
) -> tuple[list[str], list[float] | None]:
    """`predict`, and each row's loss on its gold answer where the task's forward gives it (else None).

    A prompt trained with a decision rule (balance.py) decides by it, whatever built `task`."""
    if prompt is None or hasattr(prompt, "meta"):  # a bare tensor or state: placed by its caller
        check_placement(task, getattr(prompt, "meta", None))
    task = task_with_decision(task, getattr(prompt, "meta", None))
    state = prompt_state(base, prompt)
    check_rows_fit(base, task, rows, 0 if state is None else state.width)
    out: list[str] = [""] * len(rows)
    losses: list[float | None] = [None] * len(rows)
    for index in length_sorted_batches([len(r.ids) for r in rows], batch_size):
        batch = pad_batch([rows[i].ids for i in index], base.pad_token_id, side="left", device=base.device)
        answers, batch_losses = task.predict_with_loss(base, state, batch, golds=[rows[i].gold for i in index])
        for j, i in enumerate(index):
            out[i] = answers[j]
            losses[i] = None if batch_losses is None else batch_losses[j]
    return out, None if None in losses else losses


def scored_report(task: Task, predictions: Sequence[str], golds: Sequence[str], losses: Sequence[float] | None) -> dict:
    """The task's metrics report, with the mean loss on the gold answers under "loss" where it was computed."""
    report = task.report(predictions, golds)
    return {**report, "loss": sum(losses) / len(losses)} if losses else report


def evaluate(
    base: BaseModel,
    task: Task,
    prompt: PromptInput,
    rows: Sequence[EvalRow],
    *,
    batch_size: int = 32,
    keep_predictions: bool = False,
) -> dict:
    """The task's metrics report (with `n`, and "loss" where the task gives it) for `prompt` (None = the bare model).

    `keep_predictions`: the report also holds each row's answer, in the rows' order, under
    "predictions", so two methods can be compared example by example (`bootstrap.py`).
    """
    predictions, losses = predict_with_loss(base, task, prompt, rows, batch_size=batch_size)
    report = scored_report(task, predictions, [r.gold for r in rows], losses)
    decision = decision_figures(task_with_decision(task, getattr(prompt, "meta", None)))
    report.update(decision)  # what was applied, beside the figures it gave
    return {**report, "predictions": predictions} if keep_predictions else report


# How the best weights on dev are chosen (the trainer, and the accuracy sweep's LoRA and
# full fine-tuning); the sweep's cells record it, so a change of rule measures them again.
SELECTION_RULE = "the higher dev metric; a tie goes to the lower dev loss, then to the earlier step"


def better_on_dev(value: float, loss: float | None, best_value: float | None, best_loss: float | None) -> bool:
    """SELECTION_RULE: whether a dev evaluation (metric `value`, mean `loss`) beats the best so far.

    A small dev set saturates (every evaluation scores 150/150), and keeping the first of
    equal scores then keeps weights from early in the run; the dev loss still tells them apart.
    """
    if best_value is None:
        return True
    if value != best_value:
        return value > best_value
    return loss is not None and best_loss is not None and loss < best_loss
