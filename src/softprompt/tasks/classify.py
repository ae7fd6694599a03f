"""Rank classification: pick the label whose answer words are most likely after the input.

A template with "{text}" and a verbalizer (label -> answer words). The input
ends at the answer position; each label is scored by the summed log-probability
of its answer tokens (`Task.label_scores`), and the loss is cross-entropy over
the labels, so with single-token answers only K rows of the LM head are needed.
"""

from __future__ import annotations

import math
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


@register_task
@dataclass(frozen=True)
class ClassifyTask(Task):
    kind: ClassVar[str] = "classify"
    metric: ClassVar[str] = "accuracy"
    default_template: ClassVar[str] = "Input: {text}\nLabel:"
    columns: ClassVar[tuple[str, str]] = ("text", "label")
    output_field: ClassVar[str] = "label_column"
    has_labels: ClassVar[bool] = True
    default_init: ClassVar[str] = "labels"

    template: str  # contains "{text}", e.g. "Review: {text}\nSentiment:"
    verbalizer: dict[str, str]  # label -> answer words, e.g. {"fresh": " positive"}
    # Training-loss weight per label (verbalizer order), e.g. inverse frequency; None: all 1.
    class_weights: tuple[float, ...] | None = None
    # Decision rule: added to each label's score (verbalizer order) before the argmax and the probabilities
    # (balance.py: the balanced decision under imbalanced training labels); None: the plain argmax.
    label_bias: tuple[float, ...] | None = None

    def __post_init__(self):
        split_template(self.template)
        if len(self.verbalizer) < 2:
            raise SoftPromptError(f"a classification task needs at least 2 labels, got {list(self.verbalizer)}")
        if self.class_weights is not None and (
            len(self.class_weights) != len(self.verbalizer) or not all(w > 0 for w in self.class_weights)
        ):
            raise SoftPromptError(
                f"class weights must be one positive number per label ({len(self.verbalizer)}), got {self.class_weights}"
            )
        if self.label_bias is not None and (
            len(self.label_bias) != len(self.verbalizer) or not all(math.isfinite(b) for b in self.label_bias)
        ):
            raise SoftPromptError(
                f"the label bias must be one finite number per label ({len(self.verbalizer)}), got {self.label_bias}"
            )
        for label, words in self.verbalizer.items():
            if not isinstance(words, str) or not words.strip():
                raise SoftPromptError(f"label {label!r} has empty answer words; give e.g. '{label}=positive'")
        # Frozen dataclass: make the verbalizer an (ordered) plain dict copy we own.
        object.__setattr__(self, "verbalizer", dict(self.verbalizer))

    @classmethod
    def build(cls, template: str, *, labels: dict[str, str] | None = None, output_column: str | None = None):
        if not labels:
            raise SoftPromptError("a classification task needs its labels (label=answer words)")
        return cls(template, dict(labels))

    @classmethod
    def from_meta(cls, meta: PromptMeta) -> ClassifyTask:
        if meta.task != cls.kind or not meta.template or not meta.verbalizer:
            raise SoftPromptError("the prompt file has no classification task (template and verbalizer)")
        return cls(meta.template, dict(meta.verbalizer))

    def meta_fields(self) -> dict[str, object]:
        return {"task": self.kind, "template": self.template, "verbalizer": dict(self.verbalizer)}

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.verbalizer)

    def init_words(self) -> list[str]:
        return list(self.verbalizer.values())

    def answer_tokens(self, base: BaseModel) -> int:
        return max(len(ids) for ids in self.label_token_ids(base)) - 1  # a label is scored after the input

    def label_token_ids(self, base: BaseModel) -> list[list[int]]:
        """Each label's answer tokens; refuses labels that encode identically."""
        ids = [base.encode(self.answer_words(words)) for words in self.verbalizer.values()]
        seen: dict[tuple[int, ...], str] = {}
        for label, toks in zip(self.labels, ids):
            if not toks:
                raise SoftPromptError(f"label {label!r}: answer words {self.verbalizer[label]!r} encode to no tokens")
            if tuple(toks) in seen:
                raise SoftPromptError(
                    f"labels {seen[tuple(toks)]!r} and {label!r} have the same answer tokens; give them different words"
                )
            seen[tuple(toks)] = label
        return ids

    def answer_words(self, words: str) -> str:
        """The text a label's answer words are scored as, after the input."""
        return words

    def encode_target(self, base: BaseModel, target: str, where: str) -> int:
        """The label's index (the input ends at the answer position)."""
        if target not in self.verbalizer:
            raise SoftPromptError(f"{where or 'example'}: label {target!r} is not one of {list(self.labels)}")
        return self.labels.index(target)

    def collate(self, base: BaseModel, rows: Sequence[Encoded], *, side: str = "left"):
        import torch

        from ..forward import pad_batch

        batch = pad_batch([r.ids for r in rows], base.pad_token_id, side=side, device=base.device)
        return batch, torch.tensor([r.target for r in rows], device=base.device)

    def loss(self, base: BaseModel, prompt: PromptState, batch: TokenBatch, target: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the K labels (rank-classification loss), weighted by `class_weights`."""
        import torch
        import torch.nn.functional as F

        weight = None if self.class_weights is None else torch.tensor(self.class_weights, device=target.device)
        return F.cross_entropy(self.label_scores(base, prompt, batch), target, weight=weight)

    def predict(self, base: BaseModel, prompt: PromptState, batch: TokenBatch, *, golds=None) -> list[str]:
        return self._answers(self.label_scores(base, prompt, batch))

    def decision_scores(self, scores: torch.Tensor) -> torch.Tensor:
        """The label scores the answer is decided on: `scores` plus the label bias, if any."""
        if self.label_bias is None:
            return scores
        import torch

        return scores + torch.tensor(self.label_bias, dtype=scores.dtype, device=scores.device)

    def _answers(self, scores: torch.Tensor) -> list[str]:
        return [self.labels[i] for i in self.decision_scores(scores).argmax(-1).tolist()]

    def predict_with_loss(self, base: BaseModel, prompt: PromptState, batch: TokenBatch, *, golds):
        """The answers and each row's cross-entropy over the labels, from one forward (no class weights)."""
        import torch
        import torch.nn.functional as F

        scores = self.label_scores(base, prompt, batch)
        answers = self._answers(scores)
        if any(gold not in self.verbalizer for gold in golds):  # an unknown gold scores wrong; it has no loss
            return answers, None
        target = torch.tensor([self.labels.index(gold) for gold in golds], device=scores.device)
        return answers, F.cross_entropy(scores, target, reduction="none").tolist()

    def report(self, predictions: Sequence[str], golds: Sequence[str]) -> dict:
        from ..metrics import classification_report

        return classification_report(predictions, golds)
