"""Text-to-text: the target follows the templated input; the loss is on the target tokens (and EOS) only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ..errors import SoftPromptError
from .base import Encoded, Task, split_template
from .registry import register_task

if TYPE_CHECKING:
    import torch

    from ..forward import PromptState, TokenBatch
    from ..models import BaseModel
    from ..prompts.meta import PromptMeta

ANSWER_SLACK = 4  # new tokens allowed beyond the longest gold answer when evaluating


@register_task
@dataclass(frozen=True)
class GenerateTask(Task):
    kind: ClassVar[str] = "generate"
    metric: ClassVar[str] = "token_f1"
    default_template: ClassVar[str] = "Input: {text}\nOutput:"
    columns: ClassVar[tuple[str, str]] = ("input", "target")

    template: str  # contains "{text}"; the target is appended after it
    target_column: str | None = None

    def __post_init__(self):
        split_template(self.template)

    @classmethod
    def build(cls, template: str, *, labels: dict[str, str] | None = None, output_column: str | None = None):
        return cls(template, output_column)

    @classmethod
    def from_meta(cls, meta: PromptMeta) -> GenerateTask:
        if meta.task != cls.kind or not meta.template:
            raise SoftPromptError("the prompt file has no text-to-text task (template)")
        return cls(meta.template, meta.target_column)

    def meta_fields(self) -> dict[str, object]:
        return {"task": self.kind, "template": self.template, "verbalizer": None, "target_column": self.target_column}

    def encode_target(self, base: BaseModel, target: str, where: str) -> tuple[int, ...]:
        """The target's token ids + EOS."""
        eos = base.tokenizer.eos_token_id
        target_ids = base.encode(target) + ([] if eos is None else [eos])
        if not target_ids:
            raise SoftPromptError(f"{where or 'example'}: the target is empty")
        return tuple(target_ids)

    def collate(self, base: BaseModel, rows: Sequence[Encoded], *, side: str = "left"):
        """(inputs, targets): the target token ids right-padded, one row per input."""
        from ..forward import pad_batch

        batch = pad_batch([r.ids for r in rows], base.pad_token_id, side=side, device=base.device)
        return batch, pad_batch([r.target for r in rows], base.pad_token_id, side="right", device=base.device)

    def loss_terms(self, row: Encoded) -> int:
        return len(row.target)  # the loss averages over target tokens

    def loss(self, base: BaseModel, prompt: PromptState, batch: TokenBatch, targets: TokenBatch) -> torch.Tensor:
        """Mean cross-entropy over target tokens; logits computed only at the positions that predict them."""
        import torch
        import torch.nn.functional as F

        from ..forward import next_token_logits, real_rows

        wanted = real_rows(targets)
        logits = next_token_logits(base, prompt, batch, [t[:-1] for t in wanted])
        return F.cross_entropy(logits.float(), torch.tensor([tok for t in wanted for tok in t], device=base.device))

    def predict(
        self, base: BaseModel, prompt: PromptState, batch: TokenBatch, *, golds: Sequence[str] | None = None
    ) -> list[str]:
        return generate_answers(base, prompt, batch, golds)

    def report(self, predictions: Sequence[str], golds: Sequence[str]) -> dict:
        from ..metrics import generation_report

        return generation_report(predictions, golds)


def generate_answers(
    base: BaseModel, prompt: PromptState, batch: TokenBatch, golds: Sequence[str] | None = None
) -> list[str]:
    """Greedy answers, as long as the longest gold answer allows (when golds are given) plus a little."""
    from ..decode import GenerationConfig, generate_texts

    budget = GenerationConfig.max_new_tokens
    if golds:
        budget = max(len(base.encode(g)) for g in golds) + ANSWER_SLACK
    texts = generate_texts(base, prompt, batch, GenerationConfig(max_new_tokens=budget))
    return [t.strip() for t in texts]
