"""The one prompted forward: training, evaluation, classification and decoding all run the model here.

What a prompt becomes for the model is decided in one function, `prompt_state`:

- `PrefixKV` (decoder-only models, the default): in a causal model the
  prompt's positions attend only to the prompt, so their keys and values do
  not depend on the input. They are computed once (batch size 1) and serve
  every row as a past key/value cache; only the input tokens run, and
  gradients flow through the cache back into the prompt. A deep prompt
  (trainable keys/values per layer) is a PrefixKV given directly.
- `InlinePrompt` (encoder-decoder models, where the prompt goes in front of
  the encoder input; and decoder-only models under FSDP, where each block may
  run only once per step): the prompt's embeddings are placed in front of
  every row's input and run with it, as PEFT does.
- None: no prompt.

Rows may carry different prompts of different lengths, or none
(`stack_states`): shorter prompts are left-padded and masked, so each row
sees exactly its own prompt.

Whatever the state, positions and masks are built one way (attention.py): a
row's real tokens sit at T, T+1, ... after its T prompt tokens, whatever the
padding, and sliding-window layers count their window in positions. So
left-padded, right-padded, mixed and single unpadded rows all give the same
numbers, for every family, in training too. (PEFT counts pad tokens as
positions under left padding: its output depends on the padding.) For
encoder-decoders each row's real tokens are moved to the front of the
encoder input, so T5's relative positions see every row as if alone.

Entry points: `next_token_logits` (every task's scoring and loss),
`hidden_states` / `input_logits` (every input position), `start_decoding`
(the decoding loop in decode.py), `slot_hidden_states` (the engine's steps
over its per-row cache). Every one of them reaches the model through
`_decoder_forward` (decoder-only) or `Seq2SeqRun`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from .attention import attention_masks, positions
from .errors import SoftPromptError
from .families import decoder_body, decoder_of, encoder_of, lm_head, softcap
from .models import BaseModel


@dataclass
class TokenBatch:
    input_ids: torch.Tensor  # [B, L]
    attention_mask: torch.Tensor  # [B, L], 1 = real token


def pad_batch(
    seqs: Sequence[Sequence[int]], pad_id: int, *, side: str = "left", device: torch.device | str = "cpu"
) -> TokenBatch:
    """Pad token-id lists to one [B, L] batch on `side` ("left" or "right")."""
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        span = slice(width - len(seq), width) if side == "left" else slice(0, len(seq))
        ids[row, span] = torch.tensor(list(seq), dtype=torch.long)
        mask[row, span] = 1
    return TokenBatch(ids.to(device), mask.to(device))


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last real token, for left or right padding."""
    width = attention_mask.shape[1]
    return width - 1 - attention_mask.flip(dims=[1]).argmax(dim=1)


def real_rows(batch: TokenBatch) -> list[list[int]]:
    """Each row's real token ids, padding removed."""
    return [ids[mask.bool()].tolist() for ids, mask in zip(batch.input_ids, batch.attention_mask)]


# -- prompt states ----------------------------------------------------------------------


class _PromptRows:
    """What both prompt states share: per-row tensors whose batch dimension is B, or 1 for one shared prompt.

    `mask` [B, P] marks real prompt slots (shorter prompts are left-padded).
    Subclasses say how to map a function over their tensors (`_map`) and which
    of them hold the prompt's values (`_values`).
    """

    mask: torch.Tensor

    @property
    def batch_size(self) -> int:
        return self.mask.shape[0]

    @property
    def width(self) -> int:
        return self.mask.shape[1]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._values())

    def expand(self, batch_size: int):
        """The same prompt for every row (a view: no copy, gradients sum back)."""
        return self if self.batch_size == batch_size else self._map(lambda t: t.expand(batch_size, *t.shape[1:]))

    def repeat_rows(self, repeats: int):
        """Each row `repeats` times in place (for a batch whose rows were repeated so)."""
        return self if self.batch_size == 1 else self._map(lambda t: t.repeat_interleave(repeats, dim=0))

    def detach(self):
        return self._map(lambda t: t.detach())

    def _map(self, fn):
        raise NotImplementedError

    def _values(self) -> Sequence[torch.Tensor]:
        raise NotImplementedError


@dataclass
class PrefixKV(_PromptRows):
    """Per-layer keys/values of prompts, served as a past cache in front of the input.

    keys[i], values[i]: [B, kv_heads, P, head_dim]; mask: [B, P]; lengths: [B]
    real prompt tokens, which is also where each row's input positions start.
    """

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    mask: torch.Tensor
    lengths: torch.Tensor

    @classmethod
    def of_layers(cls, keys: Sequence[torch.Tensor], values: Sequence[torch.Tensor]) -> PrefixKV:
        """A prefix from per-layer keys/values given directly (a deep prompt), every slot real."""
        b, _, p, _ = keys[0].shape
        mask = torch.ones(b, p, dtype=torch.long, device=keys[0].device)
        return cls(list(keys), list(values), mask, torch.full((b,), p, device=keys[0].device))

    def _map(self, fn) -> PrefixKV:
        return PrefixKV([fn(k) for k in self.keys], [fn(v) for v in self.values], fn(self.mask), fn(self.lengths))

    def _values(self) -> Sequence[torch.Tensor]:
        return (*self.keys, *self.values)


@dataclass
class InlinePrompt(_PromptRows):
    """Prompt embeddings run in front of each row's input: embeddings [B, P, d], mask [B, P]."""

    embeddings: torch.Tensor
    mask: torch.Tensor

    @classmethod
    def of(cls, prompt: torch.Tensor) -> InlinePrompt:
        mask = torch.ones(1, prompt.shape[0], dtype=torch.long, device=prompt.device)
        return cls(prompt.unsqueeze(0), mask)

    def _map(self, fn) -> InlinePrompt:
        return InlinePrompt(fn(self.embeddings), fn(self.mask))

    def _values(self) -> Sequence[torch.Tensor]:
        return (self.embeddings,)


PromptState = PrefixKV | InlinePrompt | None


@runtime_checkable
class PromptSource(Protocol):
    """Anything that knows its own state: a prompt of any method (prompt.SoftPrompt, prefix.PrefixPrompt)."""

    def state(self, base: BaseModel, *, share_prefix: bool = True) -> PromptState: ...


def prompt_state(
    base: BaseModel,
    prompt: torch.Tensor | PromptState | PromptSource,
    *,
    share_prefix: bool = True,
    head: Sequence[int] = (),
) -> PromptState:
    """What the forward takes for `prompt` [T, d]: the one place the path is chosen.

    Decoder-only: the shared prefix cache (keys/values once per call; differentiable),
    or with `share_prefix=False` the embeddings inline in every row (same numbers; each
    transformer block then runs once per forward, which FSDP needs). Encoder-decoder:
    inline on the encoder side. A state (e.g. a deep prompt's PrefixKV) passes through;
    a prompt object of any method gives its own (`PromptSource.state`).

    `head`: hard token ids that sit before the prompt's vectors in the same prefix (a chat
    prompt placed after its system turn, tasks/chat.py); the prompt then sits at T.. after them.
    """
    if prompt is None or isinstance(prompt, PrefixKV | InlinePrompt):
        return prompt
    if isinstance(prompt, PromptSource):
        return prompt.state(base, share_prefix=share_prefix)
    if base.is_seq2seq or not share_prefix:
        if head:
            ids = torch.tensor([list(head)], dtype=torch.long, device=base.device)
            prompt = torch.cat([base.embed(ids)[0].detach().to(prompt.dtype), prompt.to(base.device)])
        return InlinePrompt.of(prompt)
    return prompt_prefix(base, prompt, head=head)


def prompt_prefix(base: BaseModel, prompt: torch.Tensor, *, head: Sequence[int] = ()) -> PrefixKV:
    """Keys/values of `prompt` [T, d] at positions 0..T-1 (after `head`'s tokens, `head_prefix`, when given:
    then H..H+T-1 and the prefix holds both), batch size 1; differentiable in `prompt`."""
    t = prompt.shape[0]
    embeds = prompt.to(device=base.device, dtype=base.dtype).unsqueeze(0)
    run = DecoderRun(base, head_prefix(base, head) if head else None, 1)
    run.run(torch.ones(1, t, dtype=torch.long, device=base.device), embeds=embeds)
    layers = run.cache.layers
    return PrefixKV([layer.keys for layer in layers], [layer.values for layer in layers], run.key_mask, run.next_pos)


@torch.no_grad()
def head_prefix(base: BaseModel, ids: Sequence[int]) -> PrefixKV:
    """Keys/values of hard tokens `ids` at positions 0..H-1 by the frozen model, batch size 1 (no gradient:
    causal attention makes them independent of whatever follows, a prompt included)."""
    run = DecoderRun(base, None, 1)
    tokens = torch.tensor([list(ids)], dtype=torch.long, device=base.device)
    run.run(torch.ones_like(tokens), tokens)
    layers = run.cache.layers
    return PrefixKV([layer.keys for layer in layers], [layer.values for layer in layers], run.key_mask, run.next_pos)


def after_head(base: BaseModel, head: Sequence[int], prefix: PrefixKV) -> PrefixKV:
    """`prefix` (batch 1, every slot real: a deep prompt's keys/values) after `head`'s tokens (`head_prefix`):
    the tokens at positions 0..H-1, then the prefix, so an input starts at H + its width."""
    if not head:
        return prefix
    first = head_prefix(base, head)
    keys = [torch.cat([k.to(p.dtype), p], dim=2) for k, p in zip(first.keys, prefix.keys)]
    values = [torch.cat([v.to(p.dtype), p], dim=2) for v, p in zip(first.values, prefix.values)]
    return PrefixKV.of_layers(keys, values)


def stack_states(states: Sequence[PromptState]) -> PromptState:
    """One state for a batch whose rows use different prompts (None = no prompt), or None if no row has one.

    Each row's prompt is left-padded with zeros to the longest and masked, so its
    input sees exactly its own prompt.
    """
    real = [s for s in states if s is not None]
    if not real:
        return None
    if len({type(s) for s in real}) > 1:
        raise SoftPromptError("rows of one batch must all use prefix caches or all inline prompts")
    width = max(s.width for s in real)
    if isinstance(real[0], InlinePrompt):
        return InlinePrompt(
            _stack_left(states, lambda s: s.embeddings, width), _stack_left(states, lambda s: s.mask, width)
        )
    layers = range(len(real[0].keys))
    keys = [_stack_left(states, lambda s, i=i: s.keys[i], width, dim=2) for i in layers]
    values = [_stack_left(states, lambda s, i=i: s.values[i], width, dim=2) for i in layers]
    lengths = torch.stack([s.lengths[0] if s is not None else real[0].lengths.new_zeros(()) for s in states])
    return PrefixKV(keys, values, _stack_left(states, lambda s: s.mask, width), lengths)


def _stack_left(states: Sequence, part, width: int, dim: int = 1) -> torch.Tensor:
    """part(state) of every row (batch 1 each), left-padded with zeros to `width` along `dim`; zeros for None rows."""
    like = part(next(s for s in states if s is not None))
    rows = []
    for s in states:
        shape = list(like.shape)
        shape[0], shape[dim] = 1, width
        row = like.new_zeros(shape)
        if s is not None:
            tensor = part(s)
            row.narrow(dim, width - tensor.shape[dim], tensor.shape[dim]).copy_(tensor)
        rows.append(row)
    return torch.cat(rows)


# -- running the model ---------------------------------------------------------------


class DecoderRun:
    """A decoder-only model's KV cache plus, per cached key, whether it is real and its position.

    `run` appends tokens (or embeddings) for every row and returns their hidden
    states; masks come from attention.py, so padding, mixed prompts and sliding
    windows are exact. Sliding-window models keep every key (no sliding cache): their
    explicit masks apply the window by position.
    """

    def __init__(self, base: BaseModel, prefix: PrefixKV | None, batch_size: int):
        from transformers import DynamicCache

        self.base = base
        # Without a config every layer is a plain layer that keeps all keys.
        config = None if base.family.exact_windows else base.config
        device = base.device
        if prefix is None:
            self.cache = DynamicCache(config=config)
            self.key_mask = torch.zeros(batch_size, 0, dtype=torch.long, device=device)
            self.key_pos = self.key_mask
            self.next_pos = torch.zeros(batch_size, dtype=torch.long, device=device)
        else:
            prefix = prefix.expand(batch_size)
            self.cache = DynamicCache(ddp_cache_data=list(zip(prefix.keys, prefix.values)), config=config)
            self.key_mask = prefix.mask.to(device=device, dtype=torch.long)
            self.key_pos = positions(self.key_mask)
            self.next_pos = prefix.lengths.to(device=device, dtype=torch.long)

    def run(
        self, mask: torch.Tensor, ids: torch.Tensor | None = None, *, embeds: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Append `ids` (or `embeds`) [B, Q], real where `mask`, to the cache; return their hidden states [B, Q, d]."""
        query_pos = positions(mask, self.next_pos)
        self.key_mask = torch.cat([self.key_mask, mask.to(self.key_mask.dtype)], dim=1)
        self.key_pos = torch.cat([self.key_pos, query_pos], dim=1)
        self.next_pos = self.next_pos + mask.sum(dim=1)
        out = _decoder_forward(self.base, self.cache, self.key_mask, self.key_pos, query_pos, ids=ids, embeds=embeds)
        self.cache = out.past_key_values
        return out.last_hidden_state

    def select(self, index: torch.Tensor) -> None:
        """Keep only the rows in `index` (finished rows leave)."""
        self.cache.batch_select_indices(index)
        self.key_mask, self.key_pos, self.next_pos = self.key_mask[index], self.key_pos[index], self.next_pos[index]


class SlottedCache(Protocol):
    """A key/value cache that keeps each row's keys at their positions and writes where it is told
    (the engine's `engine.slots.SlotCache`); transformers calls its `update` from every layer."""

    def plan(self, write_at: torch.Tensor, width: int) -> None: ...


def slot_hidden_states(
    base: BaseModel, cache: SlottedCache, tokens: Sequence[Sequence[int]], start: Sequence[int]
) -> torch.Tensor:
    """Decoder-only, over a per-row cache: run `tokens[i]` after row i's first `start[i]` cached keys
    (its prompt and what it has run so far, at positions 0..start[i]-1); their hidden states [B, Q, d],
    padded to the longest.

    The rows' keys are all real and in position order, each at its own offset, so the masks are exact 4D
    ones from the query slots: a row's numbers do not depend on the others in the call.
    """
    device = base.device
    pad_id = base.pad_token_id if base.pad_token_id is not None else 0
    width_q = max(len(t) for t in tokens)
    ids = torch.full((len(tokens), width_q), pad_id, dtype=torch.long)
    for i, t in enumerate(tokens):
        ids[i, : len(t)] = torch.tensor(t, dtype=torch.long)
    begin = torch.tensor(list(start), device=device)
    count = torch.tensor([len(t) for t in tokens], device=device)
    # Query j of row i goes at slot begin + j; padding queries all go to the row's first free slot
    # (scratch the cache reserves: masked for every real query, overwritten by the row's next real token).
    write_at = begin[:, None] + torch.minimum(torch.arange(width_q, device=device), count[:, None])
    width = int(write_at.max()) + 1
    key_pos = positions(torch.ones(len(tokens), width, dtype=torch.long, device=device))
    key_mask = (key_pos < (begin + count)[:, None]).long()
    cache.plan(write_at, width)
    out = _decoder_forward(base, cache, key_mask, key_pos, write_at, ids=ids.to(device), query_slots=write_at)
    return out.last_hidden_state


def _decoder_forward(
    base: BaseModel,
    cache,
    key_mask: torch.Tensor,
    key_pos: torch.Tensor,
    query_pos: torch.Tensor,
    *,
    ids: torch.Tensor | None = None,
    embeds: torch.Tensor | None = None,
    query_slots: torch.Tensor | None = None,
):
    """The decoder-only model over `cache`, the one call of it: queries at `query_pos` over the keys (cached
    and new) that `key_mask` / `key_pos` describe; the new keys come last, or sit at `query_slots`."""
    return decoder_body(base.model)(
        input_ids=ids,
        inputs_embeds=embeds,
        attention_mask=attention_masks(
            base.family, key_mask, key_pos, query_pos, dtype=base.dtype, query_slots=query_slots
        ),
        position_ids=query_pos,
        past_key_values=cache,
        use_cache=True,
    )


class Seq2SeqRun:
    """An encoder-decoder: the encoder runs once on [prompt; input], the decoder appends tokens over its cache."""

    def __init__(self, base: BaseModel, prompt: InlinePrompt | None, batch: TokenBatch):
        from transformers import DynamicCache, EncoderDecoderCache

        if isinstance(prompt, PrefixKV):
            raise SoftPromptError("encoder-decoder models take the prompt inline (prompt_state), not a prefix cache")
        self.base = base
        embeds, self.memory_mask = _encoder_inputs(base, prompt, batch)
        self.memory = encoder_of(base.model)(inputs_embeds=embeds, attention_mask=self.memory_mask).last_hidden_state
        self.cache = EncoderDecoderCache(DynamicCache(), DynamicCache())

    def run(self, mask: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Append decoder tokens `ids` [B, Q] (right-padded where `mask` is 0); return their hidden states.

        The decoder is causal and its padding comes last, so no real token ever sees
        a pad: the mask is not needed (and a pad's own output is never read).
        """
        out = decoder_of(self.base.model)(
            input_ids=ids,
            encoder_hidden_states=self.memory,
            encoder_attention_mask=self.memory_mask,
            past_key_values=self.cache,
            use_cache=True,
        )
        self.cache = out.past_key_values
        return out.last_hidden_state

    def select(self, index: torch.Tensor) -> None:
        self.cache.batch_select_indices(index)
        self.memory, self.memory_mask = self.memory[index], self.memory_mask[index]

    def start_tokens(self, rows: int) -> torch.Tensor:
        start = self.base.family.decoder_start_token_id
        return torch.full((rows, 1), start, dtype=torch.long, device=self.base.device)


def _encoder_inputs(base: BaseModel, prompt: InlinePrompt | None, batch: TokenBatch):
    """Embeddings and mask of [prompt; input] per row, real tokens moved to the front (right-padded)."""
    embeds, mask = base.embed(batch.input_ids), batch.attention_mask
    if prompt is not None:
        prompt = prompt.expand(mask.shape[0])
        embeds = torch.cat([prompt.embeddings.to(device=embeds.device, dtype=embeds.dtype), embeds], dim=1)
        mask = torch.cat([prompt.mask.to(device=mask.device, dtype=mask.dtype), mask], dim=1)
    # A stable sort on "is padding" keeps each row's real tokens in order, at the front.
    order = torch.sort((mask == 0).to(torch.int8), dim=1, stable=True).indices
    return embeds.gather(1, order.unsqueeze(-1).expand_as(embeds)), mask.gather(1, order)


def _prefill(base: BaseModel, state: PromptState, batch: TokenBatch) -> tuple[DecoderRun, torch.Tensor]:
    """A decoder-only run after the batch's inputs, and their hidden states [B, L, d]."""
    if base.is_seq2seq:
        raise SoftPromptError(f"model '{base.name}' is an encoder-decoder; this needs a decoder-only model")
    rows = batch.input_ids.shape[0]
    if isinstance(state, InlinePrompt):
        state = state.expand(rows)
        embeds = torch.cat([state.embeddings.to(device=base.device, dtype=base.dtype), base.embed(batch.input_ids)], 1)
        mask = torch.cat([state.mask.to(batch.attention_mask), batch.attention_mask], dim=1)
        run = DecoderRun(base, None, rows)
        return run, run.run(mask, embeds=embeds)[:, state.width :]
    run = DecoderRun(base, state, rows)
    return run, run.run(batch.attention_mask, batch.input_ids)


def hidden_states(base: BaseModel, state: PromptState, batch: TokenBatch) -> torch.Tensor:
    """Decoder-only: the final hidden states [B, L, d] of every input position."""
    return _prefill(base, state, batch)[1]


def input_logits(
    base: BaseModel, state: PromptState, batch: TokenBatch, token_ids: torch.Tensor | None = None
) -> torch.Tensor:
    """Decoder-only: logits [B, L, V] (or [B, L, K] for `token_ids`) at every input position."""
    return lm_logits(base, hidden_states(base, state, batch), token_ids)


def next_token_logits(
    base: BaseModel,
    state: PromptState,
    batch: TokenBatch,
    fed: Sequence[Sequence[int]] | None = None,
    *,
    token_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Logits of the token after each row's input, then after each of its `fed` tokens, packed row by row.

    Row r contributes len(fed[r]) + 1 rows to the [N, V] result ([N, K] with
    `token_ids`: the restricted head, only those vocabulary rows of the LM head).
    To score a continuation c, feed c[:-1]: the rows then predict c[0], c[1], ...
    Decoder-only: the fed tokens follow the input; encoder-decoder: the input goes
    to the encoder and the decoder is fed [start, *fed[r]]. Only the positions
    asked for reach the LM head.
    """
    n = batch.input_ids.shape[0]
    fed = [list(f) for f in fed] if fed is not None else [[] for _ in range(n)]
    device = base.device
    if base.is_seq2seq:
        run = Seq2SeqRun(base, state, batch)
        start = int(run.start_tokens(1))
        dec = pad_batch([[start, *f] for f in fed], base.pad_token_id, side="right", device=device)
        hidden = run.run(dec.attention_mask, dec.input_ids)
        cols = [c for f in fed for c in range(len(f) + 1)]
    elif not any(fed):
        hidden = hidden_states(base, state, batch)
        return lm_logits(
            base, hidden[torch.arange(n, device=device), last_token_index(batch.attention_mask)], token_ids
        )
    else:
        joined = pad_batch([ids + f for ids, f in zip(real_rows(batch), fed)], base.pad_token_id, device=device)
        hidden = hidden_states(base, state, joined)
        width = joined.input_ids.shape[1]
        cols = [width - 1 - len(f) + j for f in fed for j in range(len(f) + 1)]
    rows = [r for r, f in enumerate(fed) for _ in range(len(f) + 1)]
    picked = hidden[torch.tensor(rows, device=device), torch.tensor(cols, device=device)]
    return lm_logits(base, picked, token_ids)


def start_decoding(base: BaseModel, state: PromptState, batch: TokenBatch) -> tuple[Decoding, torch.Tensor]:
    """A stepper for the decoding loop and the logits [B, V] of each row's first new token."""
    rows = batch.input_ids.shape[0]
    if base.is_seq2seq:
        run = Seq2SeqRun(base, state, batch)
        hidden = run.run(torch.ones(rows, 1, dtype=torch.long, device=base.device), run.start_tokens(rows))
    else:
        run, hidden = _prefill(base, state, batch)
    # Left padding puts every row's last input token in the last column (decoder-only);
    # an encoder-decoder's decoder holds only the start token.
    return Decoding(base, run), lm_logits(base, hidden[:, -1])


class Decoding:
    """Next-token logits one step at a time over the model's cache; rows can leave between steps."""

    def __init__(self, base: BaseModel, run: DecoderRun | Seq2SeqRun):
        self.base, self.run = base, run

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Append one token per row ([B]); return the next logits [B, V]."""
        column = tokens.unsqueeze(1)
        return lm_logits(self.base, self.run.run(torch.ones_like(column), column)[:, -1])

    def select(self, index: torch.Tensor) -> None:
        self.run.select(index)


# -- heads and losses ---------------------------------------------------------------


def lm_logits(base: BaseModel, hidden: torch.Tensor, token_ids: torch.Tensor | None = None) -> torch.Tensor:
    """LM-head logits of `hidden` [..., d]; with `token_ids` [K], only those vocabulary rows [..., K].

    Gathering K rows instead of computing all V is the "restricted head": for
    classification only the label words' logits are needed (a quantised head
    dequantises just those K rows). Whatever the model
    does after its last hidden state (T5's scaling, Gemma's softcap) is done here too.
    """
    family = base.family
    if family.output_scale:
        hidden = hidden * family.output_scale
    if token_ids is None:
        # The head module itself: nn.Linear, or a quantised head's packed-weight kernel.
        logits = lm_head(base.model)(hidden.to(base.dtype))
    else:
        weight, bias = base.head_rows(token_ids)
        logits = F.linear(hidden.to(weight.dtype), weight, bias)
    return softcap(logits, family.logit_softcap)


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy; position i predicts labels[i + 1]; -100 is ignored."""
    return F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1), ignore_index=-100
    )
