"""Score a prompt on labelled examples: accuracy and macro-F1 (classify), exact match and token F1 (generate).

The prompt's keys/values are computed once for the whole evaluation and shared
by every batch; inputs are sorted by length so batches carry little padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .data import Example
from .forward import pad_batch, prompt_state
from .metrics import classification_report, generation_report
from .models import BaseModel
from .tasks import ClassifyTask, Task


@dataclass(frozen=True)
class EvalRow:
    ids: tuple[int, ...]
    gold: str


@dataclass(frozen=True)
class EvalSet:
    rows: tuple[EvalRow, ...]
    truncated: int  # inputs cut to fit max_tokens

    def __len__(self) -> int:
        return len(self.rows)


def encode_eval_set(
    base: BaseModel, task: Task, examples: Sequence[Example], *, max_tokens: int | None = None, truncate: str = "left"
) -> EvalSet:
    rows, cut = [], 0
    for ex in examples:
        if isinstance(task, ClassifyTask):
            ids, was_cut = task.encode(base, ex.input, max_tokens=max_tokens, truncate=truncate)
        else:
            ids, _, was_cut = task.encode(base, ex.input, max_tokens=max_tokens, truncate=truncate)
        rows.append(EvalRow(tuple(ids), ex.output))
        cut += was_cut
    return EvalSet(tuple(rows), cut)


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


@torch.no_grad()
def predict(
    base: BaseModel, task: Task, prompt: torch.Tensor | None, rows: Sequence[EvalRow], *, batch_size: int = 32
) -> list[str]:
    """Predicted label (classify) or generated text (generate) per row, in the rows' order."""
    state = prompt_state(base, None if prompt is None else prompt.detach())
    out: list[str] = [""] * len(rows)
    for index in length_sorted_batches([len(r.ids) for r in rows], batch_size):
        batch = pad_batch([rows[i].ids for i in index], base.pad_token_id, side="left", device=base.device)
        if isinstance(task, ClassifyTask):
            answers = task.predict(base, state, batch)
        else:
            answers = _generate(base, state, batch, max_new_tokens=_answer_budget(base, rows, index))
        for i, answer in zip(index, answers):
            out[i] = answer
    return out


def evaluate(
    base: BaseModel, task: Task, prompt: torch.Tensor | None, rows: Sequence[EvalRow], *, batch_size: int = 32
) -> dict:
    """The task's metrics report (with `n`) for `prompt` (None = the bare model)."""
    pred = predict(base, task, prompt, rows, batch_size=batch_size)
    gold = [r.gold for r in rows]
    if isinstance(task, ClassifyTask):
        return classification_report(pred, gold)
    return generation_report(pred, gold)


def main_metric(task: Task) -> str:
    """The dev metric that picks the best prompt and drives early stopping."""
    return "accuracy" if isinstance(task, ClassifyTask) else "token_f1"


def _answer_budget(base: BaseModel, rows: Sequence[EvalRow], index: list[int]) -> int:
    # Enough new tokens for the longest gold answer in the batch, plus EOS and a little slack.
    longest = max(len(base.encode(rows[i].gold)) for i in index)
    return longest + 4


def _generate(base: BaseModel, state, batch, *, max_new_tokens: int) -> list[str]:
    from .decode import GenerationConfig, generate_texts

    texts = generate_texts(base, state, batch, GenerationConfig(max_new_tokens=max_new_tokens))
    return [t.strip() for t in texts]
