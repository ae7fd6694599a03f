"""Task formats: how an example becomes token ids, and how the model's output is scored.

`ClassifyTask`: a template with "{text}" and a verbalizer (label -> answer words).
The input ends at the answer position; each label is scored by the summed
log-probability of its answer tokens (rank classification).

`GenerateTask`: a template with "{text}"; the target follows the input and the
loss is cross-entropy on the target tokens only (plus EOS).

Every scoring function takes `prompt`, a `forward.PromptState` made by
`forward.prompt_state` (the prompt's shared prefix cache for decoder-only
models, the inline prompt for encoder-decoders, or None), and scores through
`forward.next_token_logits`, the one prompted forward for every model family.

Why training may use the restricted head exactly: with single-token labels the
label log-probs are z_k - logsumexp_V(z). The training loss is cross-entropy
over the K labels, softmax_K(z_k - c) = softmax_K(z_k) for any per-row constant
c, so the full-vocabulary logsumexp cancels and only K rows of the LM head are
needed. `label_scores` therefore returns, for single-token verbalizers, the K
raw logits (log-probs up to a per-row constant: same argmax, same softmax over
labels, same loss); pass `normalized=True` for true log-probabilities.
Multi-token labels need every position's full normalisation, so they are
always scored exactly (one row per (example, label), full vocabulary at the
label positions only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .errors import SoftPromptError
from .forward import PromptState, TokenBatch, next_token_logits, pad_batch, real_rows
from .models import BaseModel
from .prompt import PromptMeta

TEXT_SLOT = "{text}"
TRUNCATE_SIDES = ("left", "right")

Prompt = PromptState


def _split_template(template: str) -> tuple[str, str]:
    if template.count(TEXT_SLOT) != 1:
        raise SoftPromptError(
            f"the template must contain {TEXT_SLOT} exactly once, got {template!r} "
            f"(e.g. --template 'Review: {TEXT_SLOT}\\nSentiment:')"
        )
    before, after = template.split(TEXT_SLOT)
    return before, after


def special_ids(base: BaseModel) -> tuple[list[int], list[int]]:
    """Tokens the tokenizer adds around a text by default (e.g. Llama-3's BOS, T5's EOS)."""
    plain = base.encode("a")
    full = base.tokenizer("a")["input_ids"]
    start = _find(full, plain)
    if start < 0:
        return [], []
    return list(full[:start]), list(full[start + len(plain) :])


def _find(seq: Sequence[int], sub: Sequence[int]) -> int:
    for i in range(len(seq) - len(sub) + 1):
        if list(seq[i : i + len(sub)]) == list(sub):
            return i
    return -1


def encode_template(
    base: BaseModel, template: str, text: str, *, max_tokens: int | None = None, truncate: str = "left"
) -> tuple[list[int], bool]:
    """Token ids of `template` with `text` in its slot; cut only the text to fit `max_tokens`.

    The template's pieces and the text are tokenized separately so the text's
    tokens are known and can be truncated without touching the template. A
    space that ends the first piece ("Review: ") moves to the text, so the text's
    first word gets its usual leading-space token.
    """
    if truncate not in TRUNCATE_SIDES:
        raise SoftPromptError(f"--truncate must be 'left' or 'right', got {truncate!r}")
    before, after = _split_template(template)
    if before.endswith(" "):
        before, text = before[:-1], " " + text.lstrip(" ")
    lead, trail = special_ids(base)
    if not base.is_seq2seq:
        trail = []  # a decoder-only input ends at the answer position
    head = lead + (base.encode(before) if before else [])
    tail = (base.encode(after) if after else []) + trail
    body = base.encode(text)
    truncated = False
    if max_tokens is not None:
        room = max_tokens - len(head) - len(tail)
        if room < 1:
            raise SoftPromptError(
                f"--max-input-tokens {max_tokens} leaves no room for the text: the template alone "
                f"takes {len(head) + len(tail)} tokens"
            )
        if len(body) > room:
            body = body[-room:] if truncate == "left" else body[:room]
            truncated = True
    return head + body + tail, truncated


@dataclass(frozen=True)
class Encoded:
    """One example as token ids: `ids` is the input; `target` the label index or target token ids."""

    ids: tuple[int, ...]
    target: int | tuple[int, ...]
    truncated: bool = False
    where: str = ""

    def __len__(self) -> int:
        extra = len(self.target) if isinstance(self.target, tuple) else 0
        return len(self.ids) + extra


# -- classification -------------------------------------------------------------------


@dataclass(frozen=True)
class ClassifyTask:
    """Rank classification: pick the label whose answer words are most likely after the input."""

    template: str  # contains "{text}", e.g. "Review: {text}\nSentiment:"
    verbalizer: dict[str, str]  # label -> answer words, e.g. {"fresh": " positive"}
    kind: str = field(default="classify", init=False)
    # Training-loss weight per label (verbalizer order), e.g. inverse frequency; None: all 1.
    class_weights: tuple[float, ...] | None = None

    def __post_init__(self):
        _split_template(self.template)
        if len(self.verbalizer) < 2:
            raise SoftPromptError(f"a classification task needs at least 2 labels, got {list(self.verbalizer)}")
        if self.class_weights is not None and (
            len(self.class_weights) != len(self.verbalizer) or not all(w > 0 for w in self.class_weights)
        ):
            raise SoftPromptError(
                f"class weights must be one positive number per label ({len(self.verbalizer)}), got {self.class_weights}"
            )
        for label, words in self.verbalizer.items():
            if not isinstance(words, str) or not words.strip():
                raise SoftPromptError(f"label {label!r} has empty answer words; give e.g. '{label}=positive'")
        # Frozen dataclass: make the verbalizer an (ordered) plain dict copy we own.
        object.__setattr__(self, "verbalizer", dict(self.verbalizer))

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.verbalizer)

    def label_token_ids(self, base: BaseModel) -> list[list[int]]:
        """Each label's answer tokens; refuses labels that encode identically."""
        ids = [base.encode(words) for words in self.verbalizer.values()]
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

    def single_token(self, base: BaseModel) -> bool:
        return all(len(t) == 1 for t in self.label_token_ids(base))

    def encode(
        self, base: BaseModel, text: str, *, max_tokens: int | None = None, truncate: str = "left"
    ) -> tuple[list[int], bool]:
        """Input ids ending at the answer position, and whether the text was truncated."""
        return encode_template(base, self.template, text, max_tokens=max_tokens, truncate=truncate)

    def prepare(self, base: BaseModel, text: str, label: str, *, max_tokens=None, truncate="left", where="") -> Encoded:
        if label not in self.verbalizer:
            raise SoftPromptError(f"{where or 'example'}: label {label!r} is not one of {list(self.labels)}")
        ids, cut = self.encode(base, text, max_tokens=max_tokens, truncate=truncate)
        return Encoded(tuple(ids), self.labels.index(label), cut, where)

    def collate(
        self, base: BaseModel, rows: Sequence[Encoded], *, side: str = "left"
    ) -> tuple[TokenBatch, torch.Tensor]:
        batch = pad_batch([r.ids for r in rows], base.pad_token_id, side=side, device=base.device)
        return batch, torch.tensor([r.target for r in rows], device=base.device)

    def label_scores(
        self, base: BaseModel, prompt: Prompt, batch: TokenBatch, *, normalized: bool = False
    ) -> torch.Tensor:
        """[B, K] label scores: summed log-probs of each label's tokens.

        Single-token verbalizers (and not `normalized`): the K restricted-head logits,
        equal to the log-probs up to a per-row constant (see the module docstring).
        """
        label_ids = self.label_token_ids(base)
        if all(len(t) == 1 for t in label_ids):
            first = torch.tensor([t[0] for t in label_ids], device=base.device)
            if normalized:
                return next_token_logits(base, prompt, batch).float().log_softmax(-1)[:, first]
            return next_token_logits(base, prompt, batch, token_ids=first).float()
        return _multi_token_logprobs(base, prompt, batch, label_ids)

    def loss(self, base: BaseModel, prompt: Prompt, batch: TokenBatch, target: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the K labels (rank-classification loss), weighted by `class_weights`."""
        weight = None if self.class_weights is None else torch.tensor(self.class_weights, device=target.device)
        return F.cross_entropy(self.label_scores(base, prompt, batch), target, weight=weight)

    def predict(self, base: BaseModel, prompt: Prompt, batch: TokenBatch) -> list[str]:
        scores = self.label_scores(base, prompt, batch)
        return [self.labels[i] for i in scores.argmax(-1).tolist()]

    @classmethod
    def from_meta(cls, meta: PromptMeta) -> ClassifyTask:
        if meta.task != "classify" or not meta.template or not meta.verbalizer:
            raise SoftPromptError("the prompt file has no classification task (template and verbalizer)")
        return cls(meta.template, dict(meta.verbalizer))

    def to_meta(self, meta: PromptMeta) -> None:
        meta.task, meta.template, meta.verbalizer = "classify", self.template, dict(self.verbalizer)


def _multi_token_logprobs(
    base: BaseModel, prompt: Prompt, batch: TokenBatch, label_ids: list[list[int]]
) -> torch.Tensor:
    """Exact summed log-probs: one row per (example, label), fed the label's tokens but the last."""
    k, b = len(label_ids), batch.input_ids.shape[0]
    repeated = TokenBatch(batch.input_ids.repeat_interleave(k, 0), batch.attention_mask.repeat_interleave(k, 0))
    repeated_prompt = None if prompt is None else prompt.repeat_rows(k)
    logp = next_token_logits(base, repeated_prompt, repeated, [toks[:-1] for _ in range(b) for toks in label_ids])
    targets = torch.tensor([tok for _ in range(b) for toks in label_ids for tok in toks], device=base.device)
    owner = torch.tensor([r for r in range(b * k) for _ in label_ids[r % k]], device=base.device)
    picked = logp.float().log_softmax(-1).gather(1, targets.unsqueeze(1)).squeeze(1)
    return torch.zeros(b * k, device=base.device, dtype=picked.dtype).index_add(0, owner, picked).view(b, k)


# -- generation -----------------------------------------------------------------------


@dataclass(frozen=True)
class GenerateTask:
    """Text-to-text: the target follows the templated input; loss on target tokens (and EOS) only."""

    template: str  # contains "{text}"; the target is appended after it
    target_column: str | None = None
    kind: str = field(default="generate", init=False)

    def __post_init__(self):
        _split_template(self.template)

    def encode(
        self,
        base: BaseModel,
        text: str,
        target: str | None = None,
        *,
        max_tokens: int | None = None,
        truncate: str = "left",
    ) -> tuple[list[int], list[int], bool]:
        """(input ids, target ids + EOS or [] without a target, whether the input was truncated)."""
        ids, cut = encode_template(base, self.template, text, max_tokens=max_tokens, truncate=truncate)
        if target is None:
            return ids, [], cut
        eos = base.tokenizer.eos_token_id
        return ids, base.encode(target) + ([] if eos is None else [eos]), cut

    def prepare(
        self, base: BaseModel, text: str, target: str, *, max_tokens=None, truncate="left", where=""
    ) -> Encoded:
        ids, target_ids, cut = self.encode(base, text, target, max_tokens=max_tokens, truncate=truncate)
        return Encoded(tuple(ids), tuple(target_ids), cut, where)

    def collate(self, base: BaseModel, rows: Sequence[Encoded], *, side: str = "left") -> tuple[TokenBatch, TokenBatch]:
        """(inputs, targets): the target token ids right-padded, one row per input."""
        batch = pad_batch([r.ids for r in rows], base.pad_token_id, side=side, device=base.device)
        return batch, pad_batch([r.target for r in rows], base.pad_token_id, side="right", device=base.device)

    def loss(self, base: BaseModel, prompt: Prompt, batch: TokenBatch, targets: TokenBatch) -> torch.Tensor:
        """Mean cross-entropy over target tokens; logits computed only at the positions that predict them."""
        wanted = real_rows(targets)
        logits = next_token_logits(base, prompt, batch, [t[:-1] for t in wanted])
        return F.cross_entropy(logits.float(), torch.tensor([tok for t in wanted for tok in t], device=base.device))

    @classmethod
    def from_meta(cls, meta: PromptMeta) -> GenerateTask:
        if meta.task != "generate" or not meta.template:
            raise SoftPromptError("the prompt file has no text-to-text task (template)")
        return cls(meta.template, meta.target_column)

    def to_meta(self, meta: PromptMeta) -> None:
        meta.task, meta.template, meta.verbalizer = "generate", self.template, None
        meta.target_column = self.target_column


Task = ClassifyTask | GenerateTask


def task_from_meta(meta: PromptMeta) -> Task:
    """The task a prompt was trained for, from its metadata."""
    if meta.task == "classify":
        return ClassifyTask.from_meta(meta)
    if meta.task == "generate":
        return GenerateTask.from_meta(meta)
    raise SoftPromptError(
        f"the prompt file does not say what task it was trained for (task={meta.task!r}); "
        "give --template and --labels (classification) or --task generate"
    )
