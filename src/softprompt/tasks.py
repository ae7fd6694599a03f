"""Task formats: how an example becomes token ids, and how the model's output is scored.

`ClassifyTask`: a template with "{text}" and a verbalizer (label -> answer words).
The input ends at the answer position; each label is scored by the summed
log-probability of its answer tokens (rank classification).

`GenerateTask`: a template with "{text}"; the target follows the input and the
loss is cross-entropy on the target tokens only (plus EOS).

Every scoring function takes `prompt`, which is one of:
- a `PrefixKV` (the fast path: prompt keys/values computed once per batch,
  only the input tokens run; decoder-only models),
- a [T, d] tensor (the plain path: the prompt is concatenated to every row, as
  PEFT does; the only path for encoder-decoder models, and the reference the
  fast path is tested against),
- None (no prompt).

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
from .forward import PrefixKV, TokenBatch, concat_forward, last_token_index, lm_logits, pad_batch, prefixed_forward
from .models import BaseModel
from .prompt import PromptMeta

TEXT_SLOT = "{text}"
TRUNCATE_SIDES = ("left", "right")

Prompt = PrefixKV | torch.Tensor | None


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

    def __post_init__(self):
        _split_template(self.template)
        if len(self.verbalizer) < 2:
            raise SoftPromptError(f"a classification task needs at least 2 labels, got {list(self.verbalizer)}")
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
        if base.is_seq2seq:
            return _seq2seq_label_logprobs(base, prompt, batch, label_ids)
        if all(len(t) == 1 for t in label_ids):
            rows = torch.arange(batch.input_ids.shape[0], device=batch.input_ids.device)
            cols = last_token_index(batch.attention_mask)
            if normalized:
                logits = _logits_at(base, prompt, batch, rows, cols, None)
                return logits.float().log_softmax(-1)[:, [t[0] for t in label_ids]]
            ids = torch.tensor([t[0] for t in label_ids], device=base.device)
            return _logits_at(base, prompt, batch, rows, cols, ids).float()
        return _multi_token_logprobs(base, prompt, batch, label_ids)

    def loss(self, base: BaseModel, prompt: Prompt, batch: TokenBatch, target: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the K labels (rank-classification loss)."""
        return F.cross_entropy(self.label_scores(base, prompt, batch), target)

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


def _logits_at(
    base: BaseModel,
    prompt: Prompt,
    batch: TokenBatch,
    rows: torch.Tensor,
    cols: torch.Tensor,
    token_ids: torch.Tensor | None,
) -> torch.Tensor:
    """Logits [N, K or V] at (rows[i], cols[i]) of a decoder-only model, fast or plain path."""
    if isinstance(prompt, torch.Tensor):  # plain path: PEFT's way, full logits everywhere
        logits = concat_forward(base, prompt, batch).logits[rows, cols]
        return logits if token_ids is None else logits[:, token_ids]
    hidden, _ = prefixed_forward(base, prompt, batch)
    return lm_logits(base, hidden[rows, cols], token_ids)


def _repeat_rows(prompt: Prompt, repeats: int, batch_size: int) -> Prompt:
    """The prompt for a batch whose every row is repeated `repeats` times in place."""
    if not isinstance(prompt, PrefixKV) or prompt.batch_size == 1:
        return prompt
    index = torch.arange(batch_size, device=prompt.mask.device).repeat_interleave(repeats)
    return PrefixKV(
        [k[index] for k in prompt.keys], [v[index] for v in prompt.values], prompt.mask[index], prompt.lengths[index]
    )


def _real_rows(batch: TokenBatch) -> list[list[int]]:
    return [ids[mask.bool()].tolist() for ids, mask in zip(batch.input_ids, batch.attention_mask)]


def _multi_token_logprobs(
    base: BaseModel, prompt: Prompt, batch: TokenBatch, label_ids: list[list[int]]
) -> torch.Tensor:
    """Exact summed log-probs: one row per (example, label) = input + label tokens but the last."""
    inputs = _real_rows(batch)
    k = len(label_ids)
    seqs = [ids + toks[:-1] for ids in inputs for toks in label_ids]
    wide = pad_batch(seqs, base.pad_token_id, side="right", device=base.device)
    rows, cols, targets, owner = [], [], [], []
    for r, ids in enumerate(inputs):
        for j, toks in enumerate(label_ids):
            for i, tok in enumerate(toks):  # position n-1+i predicts the label's token i
                rows.append(r * k + j)
                cols.append(len(ids) - 1 + i)
                targets.append(tok)
                owner.append(r * k + j)
    dev = base.device
    logp = (
        _logits_at(
            base,
            _repeat_rows(prompt, k, len(inputs)),
            wide,
            torch.tensor(rows, device=dev),
            torch.tensor(cols, device=dev),
            None,
        )
        .float()
        .log_softmax(-1)
    )
    picked = logp.gather(1, torch.tensor(targets, device=dev).unsqueeze(1)).squeeze(1)
    sums = torch.zeros(len(inputs) * k, device=dev, dtype=picked.dtype).index_add(
        0, torch.tensor(owner, device=dev), picked
    )
    return sums.view(len(inputs), k)


def _seq2seq_label_logprobs(
    base: BaseModel, prompt: Prompt, batch: TokenBatch, label_ids: list[list[int]]
) -> torch.Tensor:
    """Encoder-decoder: the decoder is fed [start, label tokens but the last] for every label (plain path)."""
    if isinstance(prompt, PrefixKV):
        raise SoftPromptError("encoder-decoder models use the plain path: pass the prompt tensor, not a prefix cache")
    k, b = len(label_ids), batch.input_ids.shape[0]
    start = base.config.decoder_start_token_id
    dec = pad_batch([[start, *toks[:-1]] for toks in label_ids], base.pad_token_id, side="right", device=base.device)
    enc = TokenBatch(batch.input_ids.repeat_interleave(k, 0), batch.attention_mask.repeat_interleave(k, 0))
    logits = concat_forward(base, prompt, enc, decoder_input_ids=dec.input_ids.repeat(b, 1)).logits
    logp = logits.float().log_softmax(-1).view(b, k, dec.input_ids.shape[1], -1)
    scores = []
    for j, toks in enumerate(label_ids):
        idx = torch.tensor(toks, device=base.device)
        scores.append(logp[:, j, torch.arange(len(toks)), idx].sum(-1))
    return torch.stack(scores, dim=1)


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

    def collate(
        self, base: BaseModel, rows: Sequence[Encoded], *, side: str = "left"
    ) -> tuple[TokenBatch, torch.Tensor]:
        """Decoder-only: (input + target rows, labels [B, L] with -100 off the target).

        Encoder-decoder: (inputs, target labels [B, Lt]) for the decoder.
        """
        if base.is_seq2seq:
            batch = pad_batch([r.ids for r in rows], base.pad_token_id, side=side, device=base.device)
            targets = pad_batch([r.target for r in rows], base.pad_token_id, side="right", device=base.device)
            return batch, targets.input_ids.masked_fill(targets.attention_mask == 0, -100)
        batch = pad_batch([r.ids + r.target for r in rows], base.pad_token_id, side=side, device=base.device)
        labels = torch.full_like(batch.input_ids, -100)
        ends = last_token_index(batch.attention_mask)
        for i, r in enumerate(rows):
            end = int(ends[i]) + 1
            labels[i, end - len(r.target) : end] = torch.tensor(r.target)
        return batch, labels

    def loss(self, base: BaseModel, prompt: Prompt, batch: TokenBatch, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over target tokens; logits computed only at the positions that predict them."""
        if base.is_seq2seq:
            if isinstance(prompt, PrefixKV):
                raise SoftPromptError("encoder-decoder models use the plain path: pass the prompt tensor")
            return concat_forward(base, prompt, batch, labels=labels).loss
        # Position i predicts labels[i + 1].
        rows, cols = torch.nonzero(labels[:, 1:] != -100, as_tuple=True)
        logits = _logits_at(base, prompt, batch, rows, cols, None)
        return F.cross_entropy(logits.float(), labels[rows, cols + 1])

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
