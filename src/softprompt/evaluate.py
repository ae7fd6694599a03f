"""Score a prompt on labelled examples with the task's own metrics (accuracy and macro-F1, exact match and token F1, ...).

The prompt's state is computed once for the whole evaluation and shared by
every batch; inputs are sorted by length so batches carry little padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .data import Example
from .forward import PromptSource, PromptState, pad_batch, prompt_state
from .models import BaseModel
from .tasks import Encoded, Task

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


@torch.no_grad()
def predict(
    base: BaseModel, task: Task, prompt: PromptInput, rows: Sequence[EvalRow], *, batch_size: int = 32
) -> list[str]:
    """The task's answer (a label, a generated text, ...) per row, in the rows' order.

    `prompt`: a prompt of any method, its state, a plain prompt's [T, d] tensor, or None (the bare model).
    """
    state = prompt_state(base, prompt)
    check_rows_fit(base, task, rows, 0 if state is None else state.width)
    out: list[str] = [""] * len(rows)
    for index in length_sorted_batches([len(r.ids) for r in rows], batch_size):
        batch = pad_batch([rows[i].ids for i in index], base.pad_token_id, side="left", device=base.device)
        for i, answer in zip(index, task.predict(base, state, batch, golds=[rows[i].gold for i in index])):
            out[i] = answer
    return out


def evaluate(
    base: BaseModel,
    task: Task,
    prompt: PromptInput,
    rows: Sequence[EvalRow],
    *,
    batch_size: int = 32,
    keep_predictions: bool = False,
) -> dict:
    """The task's metrics report (with `n`) for `prompt` (None = the bare model).

    `keep_predictions`: the report also holds each row's answer, in the rows' order, under
    "predictions", so two methods can be compared example by example (`bootstrap.py`).
    """
    predictions = predict(base, task, prompt, rows, batch_size=batch_size)
    report = task.report(predictions, [r.gold for r in rows])
    return {**report, "predictions": predictions} if keep_predictions else report
