"""The prompted forward pass, two ways that give the same numbers.

Plain path (`concat_forward`): prepend the prompt embeddings to every row's
input embeddings and run the whole sequence, as PEFT does. Works for every
model, including encoder-decoders (prompt on the encoder side).

Shared-prefix path (`prompt_prefix` + `prefixed_forward`): in a decoder-only
model with causal attention the prompt's positions attend only to the prompt,
so their keys and values do not depend on the input. We compute them once
(batch size 1), expand them along the batch as a past key/value cache, and run
only the input tokens. Gradients flow through the cache into the prompt. Rows
may carry different prompts of different lengths (`stack_prefixes`): shorter
prefixes are left-padded and masked, so each row sees exactly its own prompt.

Positions: a row's real tokens always sit at T, T+1, ... whatever the padding,
so left- and right-padded batches give the same result as unpadded rows. (PEFT
counts pad tokens as positions under left padding, which shifts RoPE and
absolute position embeddings: its output depends on the padding.)

Known limit: for sliding-window models (Gemma 2/3) transformers applies the
window by cache slot, not by position, so once prompt + padded input is longer
than the window (512 tokens for Gemma 3 1B) a padded row sees fewer real tokens
than it would alone. Inference avoids this (`decode.KVState` builds its masks
from positions); these training paths do not yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .models import BaseModel


@dataclass
class TokenBatch:
    input_ids: torch.Tensor  # [B, L]
    attention_mask: torch.Tensor  # [B, L], 1 = real token

    @property
    def lengths(self) -> torch.Tensor:
        return self.attention_mask.sum(dim=1)


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


def positions(attention_mask: torch.Tensor, offset: torch.Tensor | int = 0) -> torch.Tensor:
    """Position ids counting only real tokens, starting at `offset` (per row or scalar).

    Pad slots get the position of the next real token; they are masked, so any
    valid index will do.
    """
    pos = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
    if isinstance(offset, torch.Tensor):
        offset = offset.view(-1, 1)
    return pos + offset


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last real token, for left or right padding."""
    width = attention_mask.shape[1]
    return width - 1 - attention_mask.flip(dims=[1]).argmax(dim=1)


# -- plain path -----------------------------------------------------------------


def concat_forward(
    base: BaseModel,
    prompt: torch.Tensor | None,
    batch: TokenBatch,
    *,
    labels: torch.Tensor | None = None,
    decoder_input_ids: torch.Tensor | None = None,
):
    """Run the model on [prompt; input] for every row; return the model output.

    For decoder-only models `logits` covers the input positions only ([B, L, V])
    and `loss` (when `labels` [B, L] is given, -100 = ignore) is next-token
    cross-entropy over those positions. For encoder-decoder models the prompt
    goes in front of the encoder input and `labels` (or `decoder_input_ids`) feed the decoder.
    """
    ids, mask = batch.input_ids, batch.attention_mask
    embeds = base.embed(ids)
    t = 0 if prompt is None else prompt.shape[0]
    if t:
        rows = prompt.to(embeds.dtype).unsqueeze(0).expand(ids.shape[0], -1, -1)
        embeds = torch.cat([rows, embeds], dim=1)
        mask = torch.cat([mask.new_ones(ids.shape[0], t), mask], dim=1)
    if base.is_seq2seq:
        return base.model(inputs_embeds=embeds, attention_mask=mask, labels=labels, decoder_input_ids=decoder_input_ids)
    out = base.model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions(mask))
    out.logits = out.logits[:, t:]
    out.loss = None if labels is None else causal_lm_loss(out.logits, labels)
    return out


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy; position i predicts labels[i + 1]; -100 is ignored."""
    return F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1), ignore_index=-100
    )


# -- shared-prefix path -------------------------------------------------------------


@dataclass
class PrefixKV:
    """Per-layer keys/values of prompts, ready to serve as a past cache.

    keys[i], values[i]: [B, heads, P, head_dim]; mask: [B, P] (1 = real prompt
    token; shorter prompts are left-padded); lengths: [B] real prompt tokens.
    B is 1 for a single prompt shared by the whole batch.
    """

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    mask: torch.Tensor
    lengths: torch.Tensor

    @property
    def batch_size(self) -> int:
        return self.mask.shape[0]

    @property
    def width(self) -> int:
        return self.mask.shape[1]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))

    def expand(self, batch_size: int) -> PrefixKV:
        """The same prompt for every row (a view: no copy, gradients sum back)."""
        if self.batch_size == batch_size:
            return self
        grow = lambda t: t.expand(batch_size, *t.shape[1:])  # noqa: E731
        return PrefixKV(
            [grow(k) for k in self.keys], [grow(v) for v in self.values], grow(self.mask), grow(self.lengths)
        )

    def detach(self) -> PrefixKV:
        return PrefixKV([k.detach() for k in self.keys], [v.detach() for v in self.values], self.mask, self.lengths)


def decoder_body(base: BaseModel):
    """The transformer without its LM head (LlamaModel, GPT2Model, ...)."""
    return base.model.base_model


def prompt_prefix(base: BaseModel, prompt: torch.Tensor) -> PrefixKV:
    """Keys/values of `prompt` [T, d] at positions 0..T-1, batch size 1; differentiable."""
    from transformers import DynamicCache

    t = prompt.shape[0]
    embeds = prompt.to(device=base.device, dtype=base.dtype).unsqueeze(0)
    mask = torch.ones(1, t, dtype=torch.long, device=base.device)
    cache = DynamicCache(config=base.config)
    decoder_body(base)(
        inputs_embeds=embeds, attention_mask=mask, position_ids=positions(mask), past_key_values=cache, use_cache=True
    )
    return PrefixKV(
        [layer.keys for layer in cache.layers],
        [layer.values for layer in cache.layers],
        mask,
        torch.tensor([t], device=base.device),
    )


def stack_prefixes(prefixes: Sequence[PrefixKV | None]) -> PrefixKV | None:
    """One PrefixKV for a batch whose rows use different prompts (None = no prompt).

    Each row's prefix is left-padded with zeros to the longest and masked, so
    its input tokens see exactly its own prompt. Returns None when no row has a prompt.
    """
    real = [p for p in prefixes if p is not None]
    if not real:
        return None
    ref = real[0]
    width = max(p.width for p in real)
    n_layers = len(ref.keys)

    def padded(p: PrefixKV | None, layer: int, which: str) -> torch.Tensor:
        like = getattr(ref, which)[layer][:1]
        out = like.new_zeros(1, like.shape[1], width, like.shape[3])
        if p is not None:
            out[:, :, width - p.width :] = getattr(p, which)[layer]
        return out

    keys = [torch.cat([padded(p, i, "keys") for p in prefixes]) for i in range(n_layers)]
    values = [torch.cat([padded(p, i, "values") for p in prefixes]) for i in range(n_layers)]
    mask = ref.mask.new_zeros(len(prefixes), width)
    lengths = ref.lengths.new_zeros(len(prefixes))
    for row, p in enumerate(prefixes):
        if p is not None:
            mask[row, width - p.width :] = p.mask[0]
            lengths[row] = p.lengths[0]
    return PrefixKV(keys, values, mask, lengths)


def prefixed_forward(base: BaseModel, prefix: PrefixKV | None, batch: TokenBatch, *, use_cache: bool = False):
    """Run only the input tokens on top of the prompt cache; return (hidden [B, L, d], cache).

    The returned cache (when `use_cache`) holds prefix + input keys/values, for decoding.
    """
    from transformers import DynamicCache

    ids, mask = batch.input_ids, batch.attention_mask
    if prefix is None:
        full_mask, offset, cache = mask, 0, DynamicCache(config=base.config) if use_cache else None
    else:
        prefix = prefix.expand(ids.shape[0])
        full_mask = torch.cat([prefix.mask.to(mask.dtype), mask], dim=1)
        offset = prefix.lengths
        cache = DynamicCache(ddp_cache_data=list(zip(prefix.keys, prefix.values)), config=base.config)
    out = decoder_body(base)(
        input_ids=ids,
        attention_mask=full_mask,
        position_ids=positions(mask, offset),
        past_key_values=cache,
        use_cache=use_cache or prefix is not None,
    )
    return out.last_hidden_state, (out.past_key_values if use_cache else None)


def lm_logits(base: BaseModel, hidden: torch.Tensor, token_ids: torch.Tensor | None = None) -> torch.Tensor:
    """LM-head logits of `hidden` [..., d]; with `token_ids` [K], only those vocabulary rows [..., K].

    Gathering K rows instead of computing all V is the "restricted head": for
    classification only the label words' logits are needed.
    """
    head = base.model.get_output_embeddings()
    weight, bias = head.weight, getattr(head, "bias", None)
    if token_ids is not None:
        weight = weight[token_ids]
        bias = None if bias is None else bias[token_ids]
    logits = F.linear(hidden.to(weight.dtype), weight, bias)
    cap = getattr(base.config.get_text_config(), "final_logit_softcapping", None)
    if cap:  # Gemma 2/3 squash logits; restricted or not, do what the model does
        logits = torch.tanh(logits / cap) * cap
    return logits
