"""Positions and attention masks, built one way from explicit key positions.

Every prompted forward (training, evaluation, classification, decoding) keeps,
for each cached key, whether it is real and its position, and for each query
its position. From those:

- positions count real tokens only, so padding never shifts a row's positions
  (a row's real tokens sit at T, T+1, ... after a T-token prompt, however padded);
- ordinary models get the 2D key mask: transformers' slot-causal mask is then
  exact, because each row's real keys sit in its cache in position order;
- sliding-window layers (Gemma 2/3, Mistral, Qwen2 with windows) get exact 4D
  masks: transformers counts the window in cache slots, so a padded row (or a
  row behind a shorter prompt in a mixed batch) would see fewer real tokens
  than the same row alone. We count it in positions.

`attention_masks` takes the positions as arguments and assumes nothing about
how the cache is laid out, so a per-row cache (rows joining and leaving a batch
at different steps, engine/slots.py) can call it with `slots_in_order=False`
and each query's own slot (`query_slots`) and get exact 4D masks for every layer.
"""

from __future__ import annotations

import torch

from .families import EXPLICIT_MASKS, FULL, SLIDING, Family


def positions(attention_mask: torch.Tensor, offset: torch.Tensor | int = 0) -> torch.Tensor:
    """Position ids counting only real tokens, starting at `offset` (per row or scalar).

    Pad slots get the position of the next real token; they are masked, so any
    valid index will do.
    """
    pos = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
    if isinstance(offset, torch.Tensor):
        offset = offset.view(-1, 1)
    return pos + offset


def attention_masks(
    family: Family,
    key_mask: torch.Tensor,
    key_pos: torch.Tensor,
    query_pos: torch.Tensor,
    *,
    dtype: torch.dtype,
    slots_in_order: bool = True,
    query_slots: torch.Tensor | None = None,
):
    """The mask(s) for queries at `query_pos` [B, Q] over keys [B, K] (`key_mask` 1 = real).

    The queries' own keys are the last Q keys, or at `query_slots` [B, Q] (a per-row cache
    writes each row's new keys at its own offsets).

    Returns the 2D `key_mask` where transformers' own mask is exact (no sliding
    layers and every row's keys in position order: the fast SDPA path), else 4D
    masks: a {layer type: mask} dict for models that take one, or the single
    mask for models whose layers are all alike. A key is visible to a query when
    it is real, not after it, and (sliding layers) fewer than `window` positions
    before it. A query always sees its own slot, so a pad query never has an
    all-masked row (NaN in sdpa).
    """
    if query_slots is not None:
        slots_in_order = False
    explicit = family.attn_implementation in EXPLICIT_MASKS  # other kernels (flash, flex) take 2D masks only
    window = family.sliding_window
    if not explicit or (window is None and slots_in_order):
        return key_mask
    q, k = query_pos.shape[1], key_pos.shape[1]
    kp, qp = key_pos[:, None, None, :], query_pos[:, None, :, None]
    if query_slots is None:
        own = torch.zeros(q, k, dtype=torch.bool, device=key_mask.device)
        own[torch.arange(q), torch.arange(k - q, k)] = True
    else:
        own = torch.arange(k, device=key_mask.device) == query_slots[:, None, :, None]
    full = (key_mask.bool()[:, None, None, :] & (kp <= qp)) | own
    masks = {FULL: full, SLIDING: full if window is None else full & ((qp - kp < window) | own)}
    if family.attn_implementation == "eager":  # eager adds the mask to the scores
        low = torch.finfo(dtype).min
        masks = {
            kind: torch.zeros(m.shape, dtype=dtype, device=m.device).masked_fill(~m, low) for kind, m in masks.items()
        }
    if family.masks_by_layer_type:
        return masks
    return masks[family.layer_types[0]]
