"""Activation memory in training: what the backward pass keeps, and what it computes again.

The prompt reaches every layer (as keys/values, or as the first inputs), so its
gradient needs the backward pass through every transformer block the inputs
run through, as fine-tuning does: most of training's memory is the block
activations autograd keeps for it. The frozen weights need no gradient, so
their inputs are not kept; what is kept is what the element-wise work and
attention need (norm inputs, the MLP's gate, activation and up-projection, the
prompt's keys/values concatenated in front of the input's and repeated for
every query head, attention's inputs and outputs). `recompute(base, mode)`
chooses, for the forwards run inside it (`TrainConfig.gradient_checkpointing`):

- "selective" (the default): each block keeps the outputs of its matrix
  products and attention and recomputes the cheap element-wise work in the
  backward pass. About a fifth less memory for little time (no product is
  redone), and what is kept no longer grows with the prompt length (the
  concatenated, repeated keys and values are recomputed).
- "full": each block keeps only its inputs and runs its forward again in the
  backward pass: the activations of one block at a time, for the cost of a
  second forward. For long inputs.
- "off": autograd keeps what it keeps.

Recomputing runs the same operations on the same numbers, so the gradient is
the same, bit for bit (tests/test_recompute.py). A block appends its new
keys/values to the cache as it runs, so before each rerun its cache is put
back as the block first saw it: the prompt's keys/values stay in front, and
their gradient still flows. (transformers' own gradient checkpointing drops
the cache instead, and with it the prompt.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

import torch
from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

from .families import decoder_of, encoder_of, transformer_blocks
from .models import BaseModel
from .prompts.registry import GRADIENT_CHECKPOINTING

MODES = GRADIENT_CHECKPOINTING

# Operations whose outputs "selective" keeps: matrix products and attention kernels (costly to redo).
# Everything else in a block (norms, activations, rotary embeddings, concatenation, head repetition)
# is recomputed. Kernels a build lacks are skipped.
_KEPT = tuple(
    getattr(torch.ops.aten, name).default
    for name in (
        "mm",
        "addmm",
        "bmm",
        "baddbmm",
        "convolution",
        "_weight_int8pack_mm",  # a quantised model's products (softprompt.quant)
        "_weight_int4pack_mm_for_cpu",
        "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_cudnn_attention",
    )  # fmt: skip
    if hasattr(torch.ops.aten, name)
)


@contextmanager
def recompute(base: BaseModel, mode: str) -> Iterator[None]:
    """Within: forwards with gradients keep block activations as `mode` says (see the module's doc).

    Wraps each block's `forward` for the duration (and only where gradients are on,
    so a forward without gradients on another thread runs as usual).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    blocks = _blocks(base) if mode != "off" else []
    # A block may already have its own forward (accelerate's device hooks): wrap that, put it back after.
    own = [(block, vars(block).get("forward")) for block in blocks]
    for block in blocks:
        block.forward = partial(_checkpointed, block.forward, mode)
    try:
        yield
    finally:
        for block, forward in own:
            if forward is None:
                vars(block).pop("forward", None)
            else:
                block.forward = forward


def _blocks(base: BaseModel) -> list[torch.nn.Module]:
    if base.is_seq2seq:
        return transformer_blocks(encoder_of(base.model)) + transformer_blocks(decoder_of(base.model))
    return transformer_blocks(base.model)


def _checkpointed(forward: Callable, mode: str, *args, **kwargs):
    if not torch.is_grad_enabled():
        return forward(*args, **kwargs)
    from transformers import Cache

    cache = next((a for a in (*args, *kwargs.values()) if isinstance(a, Cache)), None)
    restore = _restorer(cache)
    if restore is None:  # a cache we cannot put back: keep everything rather than recompute wrongly
        return forward(*args, **kwargs)

    def run(*a):
        restore()
        return forward(*a, **kwargs)

    context = (
        {"context_fn": partial(create_selective_checkpoint_contexts, _keep_products)} if mode == "selective" else {}
    )
    return checkpoint(run, *args, use_reentrant=False, **context)


def _keep_products(ctx, op, *args, **kwargs) -> CheckpointPolicy:
    return CheckpointPolicy.MUST_SAVE if op in _KEPT else CheckpointPolicy.PREFER_RECOMPUTE


def _restorer(cache) -> Callable[[], None] | None:
    """A function that puts `cache` back as it is now (no tensor is copied), or None for an unknown cache."""
    if cache is None:
        return lambda: None
    if hasattr(cache, "self_attention_cache"):  # encoder-decoder: two caches and which cross layers are filled
        parts = [_restorer(cache.self_attention_cache), _restorer(cache.cross_attention_cache)]
        flags = dict(getattr(cache, "is_updated", {}))
        if None in parts:
            return None

        def restore_both() -> None:
            for part in parts:
                part()
            if hasattr(cache, "is_updated"):
                cache.is_updated.clear()
                cache.is_updated.update(flags)

        return restore_both
    if not isinstance(getattr(cache, "layers", None), list):
        return None
    layers = list(cache.layers)
    states = [dict(vars(layer)) for layer in layers]

    def restore() -> None:
        cache.layers[:] = layers  # layers added lazily by the block go again
        for layer, state in zip(layers, states):
            vars(layer).clear()
            vars(layer).update(state)

    return restore
