"""Our own decoding loop on the model's KV cache: greedy or sampled, batched, streamed.

We do not call `transformers.generate`: prompt tuning there goes through PEFT's
patched `prepare_inputs_for_generation`, where its prompt-tuning bugs live, and
it cannot mix prompts per row. The loop is short:

1. `forward.start_decoding` runs the (left-padded) inputs after the prompt
   (decoder-only: on top of its cached keys/values; encoder-decoder: the encoder
   once, then the decoder's start token) and gives the first logits.
2. Each step appends one token per row through the same exact forward: each
   row's position continues from its own prompt length + real input length, so
   padding never shifts positions, and sliding windows count positions.
3. Rows stop at EOS, at a stop string, or at their token limit; finished rows
   are dropped from the cache so they cost nothing more.

Text comes out through `RowText`, which turns token ids into new text pieces:
it holds back an incomplete UTF-8 character and any tail that may be the start
of a stop string, so a streamed piece is never taken back.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields

import torch

from .errors import SoftPromptError
from .forward import PromptState, TokenBatch, start_decoding
from .models import BaseModel

MIN_SAMPLING_TEMPERATURE = 1e-5


@dataclass(frozen=True)
class GenerationConfig:
    """How to pick tokens. temperature 0 = greedy (top_k/top_p/seed then unused)."""

    max_new_tokens: int = 32  # at most this many tokens per row (fewer if the context fills up)
    temperature: float = 0.0  # 0 = greedy; > 0 divides the logits before sampling
    top_k: int = 0  # sample among the k most likely tokens; 0 = no limit
    top_p: float = 1.0  # sample among the smallest set of tokens whose probability reaches p
    seed: int | None = None  # same seed + same request = same text, whatever else is in the batch
    stop: tuple[str, ...] = ()  # generation ends before the first occurrence of any of these

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):  # a lone string would be read as its characters
            object.__setattr__(self, "stop", (self.stop,))
        object.__setattr__(self, "stop", tuple(self.stop))
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise SoftPromptError(f"max_new_tokens must be a whole number >= 1, got {self.max_new_tokens!r}")
        if not self.temperature >= 0:  # also refuses NaN
            raise SoftPromptError(f"temperature must be >= 0 (0 = greedy), got {self.temperature!r}")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise SoftPromptError(f"top_k must be a whole number >= 0 (0 = no limit), got {self.top_k!r}")
        if not 0 < self.top_p <= 1:
            raise SoftPromptError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise SoftPromptError(f"stop strings must be non-empty strings, got {self.stop!r}")

    @classmethod
    def from_options(cls, options: object, **overrides) -> GenerationConfig:
        """The config from any object carrying the fields as attributes (CLI arguments, an API request body);
        `overrides` win (e.g. max_new_tokens from a field named otherwise); a missing or None `stop` is none."""
        values = {f.name: getattr(options, f.name) for f in fields(cls) if hasattr(options, f.name)}
        values.update(overrides)
        if values.get("stop") is None:
            values.pop("stop", None)
        return cls(**values)

    @property
    def greedy(self) -> bool:
        # Below this, sampling is argmax at float precision, and logits / temperature can
        # overflow to inf (NaN probabilities); so tiny temperatures decode greedily.
        return self.temperature < MIN_SAMPLING_TEMPERATURE


# -- picking tokens ------------------------------------------------------------------


def filter_logits(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Set to -inf every logit outside the top-k and outside the top-p nucleus ([B, V] in, [B, V] out)."""
    if top_k and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # Drop a token when the tokens before it already reach top_p; the first always stays.
        drop_sorted = probs.cumsum(dim=-1) - probs >= top_p
        # Explicitly: a top_p below float32's smallest value rounds to 0 and would drop it too.
        drop_sorted[:, 0] = False
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def next_tokens(
    logits: torch.Tensor, config: GenerationConfig, generators: Sequence[torch.Generator] | None = None
) -> torch.Tensor:
    """One token id per row of `logits` [B, V]: argmax, or a sample with row i drawn from generators[i]."""
    if config.greedy:
        return logits.argmax(dim=-1)
    probs = filter_logits(logits.float() / config.temperature, config.top_k, config.top_p).softmax(dim=-1)
    # One generator per row, so a row's sample does not depend on which other rows share the batch.
    picks = [torch.multinomial(p.cpu(), 1, generator=g) for p, g in zip(probs, generators or [None] * len(probs))]
    return torch.cat(picks).to(logits.device)


def row_generators(seeds: Sequence[int | None]) -> list[torch.Generator]:
    """CPU generators, seeded where a seed is given (else from fresh OS entropy)."""
    return [torch.Generator().manual_seed(s) if s is not None else _fresh_generator() for s in seeds]


def _fresh_generator() -> torch.Generator:
    g = torch.Generator()
    g.seed()
    return g


def eos_token_ids(base: BaseModel) -> frozenset[int]:
    """Every id that ends generation: the tokenizer's EOS and the model's generation_config EOS (one or many)."""
    ids = {base.tokenizer.eos_token_id}
    gen_config = getattr(base.model, "generation_config", None)
    configured = getattr(gen_config, "eos_token_id", None)
    ids.update(configured if isinstance(configured, list | tuple) else [configured])
    return frozenset(i for i in ids if i is not None)


# -- ids to text ---------------------------------------------------------------------


class RowText:
    """One row's generated ids and text; `push` returns the new, final text piece."""

    def __init__(self, tokenizer, stop: tuple[str, ...], limit: int, eos_ids: frozenset[int]):
        self.tokenizer, self.stop, self.limit, self.eos_ids = tokenizer, stop, limit, eos_ids
        self.ids: list[int] = []
        self.text = ""  # the final text so far (stop string cut off once found)
        self.emitted = 0  # characters of `text` already returned by push
        self.done = limit <= 0
        # Why the row ended: "stop" (EOS or a stop string) or "length" (its token limit, or the context is full).
        self.reason: str | None = "length" if self.done else None

    def push(self, token: int) -> str:
        if self.done:
            return ""
        if token in self.eos_ids:
            return self._end("stop")
        self.ids.append(token)
        self.text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if self._cut_at_stop():
            return self._end("stop")
        if len(self.ids) >= self.limit:
            return self._end("length")
        safe = len(self.text) - self._held_back()
        piece = self.text[self.emitted : max(safe, self.emitted)]
        self.emitted += len(piece)
        return piece

    def finish(self) -> str:
        """End the row now (e.g. its context is full) and return what was held back."""
        return self._end("length")

    def _end(self, reason: str) -> str:
        self.done, self.reason = True, reason
        return self._flush()

    def _flush(self) -> str:
        piece = self.text[self.emitted :]
        self.emitted = len(self.text)
        return piece

    def _cut_at_stop(self) -> bool:
        if not self.stop:
            return False
        # Only the new tail can hold a new occurrence (earlier text was checked already).
        start = max(0, self.emitted - max(len(s) for s in self.stop))
        hits = [i for i in (self.text.find(s, start) for s in self.stop) if i >= 0]
        if hits:
            self.text = self.text[: min(hits)]
        return bool(hits)

    def _held_back(self) -> int:
        """Characters at the end not to emit yet: a half-decoded character, then a possible stop-string start."""
        clean = self.text.rstrip("\ufffd")  # U+FFFD: bytes of a multi-byte character still to come
        partial = len(self.text) - len(clean)
        for n in range(min(len(clean), max((len(s) - 1 for s in self.stop), default=0)), 0, -1):
            if any(s.startswith(clean[-n:]) for s in self.stop):
                return partial + n
        return partial


# -- the loop -------------------------------------------------------------------------


def stream_generate(
    base: BaseModel,
    prompt: PromptState,
    batch: TokenBatch,
    config: GenerationConfig,
    *,
    limits: Sequence[int] | None = None,
    seeds: Sequence[int | None] | None = None,
) -> Iterator[list[str]]:
    """Decode every row of a left-padded `batch` after `prompt`; yield each step's new text per row.

    `limits[i]` caps row i's new tokens (default config.max_new_tokens); `seeds[i]`
    seeds row i's sampler (default config.seed). A finished row yields "". Ends
    when every row is done; the rows' texts are the concatenated pieces.
    """
    rows = new_rows(base, batch, config, limits)
    yield from decode_rows(base, prompt, batch, config, rows, seeds=seeds)


def new_rows(base: BaseModel, batch: TokenBatch, config: GenerationConfig, limits: Sequence[int] | None = None):
    n = batch.input_ids.shape[0]
    limits = [config.max_new_tokens] * n if limits is None else list(limits)
    return [RowText(base.tokenizer, config.stop, limit, eos_token_ids(base)) for limit in limits]


def generate_rows(
    base: BaseModel, prompt: PromptState, batch: TokenBatch, config: GenerationConfig, **kwargs
) -> list[RowText]:
    """Decode to the end; each RowText holds the row's token ids and final text."""
    rows = new_rows(base, batch, config, kwargs.pop("limits", None))
    for _ in decode_rows(base, prompt, batch, config, rows, **kwargs):
        pass
    return rows


@torch.no_grad()
def decode_rows(
    base: BaseModel,
    prompt: PromptState,
    batch: TokenBatch,
    config: GenerationConfig,
    rows: list[RowText],
    *,
    seeds: Sequence[int | None] | None = None,
) -> Iterator[list[str]]:
    """The decoding loop: push each step's tokens into `rows` and yield their new text pieces."""
    n = len(rows)
    generators = None if config.greedy else row_generators(seeds or [config.seed] * n)
    if all(row.done for row in rows):
        return
    decoding, logits = start_decoding(base, prompt, batch)
    active = torch.arange(n)  # rows still in the cache, in cache order
    while True:
        gens = None if generators is None else [generators[i] for i in active.tolist()]
        tokens = next_tokens(logits, config, gens)
        pieces = [""] * n
        for slot, row in enumerate(active.tolist()):
            pieces[row] = rows[row].push(int(tokens[slot]))
        yield pieces
        keep = torch.tensor([not rows[row].done for row in active.tolist()])
        if not keep.any():
            return
        if not keep.all():  # finished rows leave the batch: later steps do not compute them
            index = keep.nonzero().squeeze(1).to(tokens.device)
            decoding.select(index)
            active, tokens = active[keep], tokens[index]
        logits = decoding.step(tokens)


def generate_texts(
    base: BaseModel, prompt: PromptState, batch: TokenBatch, config: GenerationConfig, **kwargs
) -> list[str]:
    """The whole generated text per row."""
    return [row.text for row in generate_rows(base, prompt, batch, config, **kwargs)]
