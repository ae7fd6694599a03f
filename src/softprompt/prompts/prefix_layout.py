"""How a deep prompt's row lays out every layer's key and value (`PrefixShape`), and the deep prompt equal to
a plain one (`prefix_of_embeddings`): what the deep prompt (prefix.py) and its inspection share.

Row t of a deep prompt [T, L * 2 * kv_heads * head_dim] holds, for each layer i, the key (slot 2i)
then the value (slot 2i+1) of virtual token t, each kv_heads x head_dim (PEFT's PREFIX_TUNING layout).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import SoftPromptError
from ..forward import prompt_prefix
from ..models import BaseModel


@dataclass(frozen=True)
class PrefixShape:
    """How a deep prompt's row splits: per layer a key and a value of kv_heads x head_dim."""

    layers: int
    kv_heads: int
    head_dim: int

    @property
    def token_dim(self) -> int:
        """One key (or value) of one layer: PEFT's `token_dim`."""
        return self.kv_heads * self.head_dim

    @property
    def width(self) -> int:
        """Numbers per virtual token."""
        return self.layers * 2 * self.token_dim

    @classmethod
    def of(cls, base: BaseModel) -> PrefixShape:
        """The shape a deep prompt for `base` has; refuses models it cannot serve."""
        family = base.family
        if family.seq2seq:
            raise SoftPromptError(
                f"model '{base.name}' is an encoder-decoder: deep prompts (--method prefix) need a decoder-only "
                "model; train a plain prompt (--method prompt) instead"
            )
        shapes = {family.kv_shape(layer) for layer in range(family.num_layers)}
        if len(shapes) != 1:
            raise SoftPromptError(
                f"model '{base.name}' has layers of different key/value shapes {sorted(shapes)}; "
                "deep prompts need one shape for every layer"
            )
        ((heads, dim),) = shapes
        return cls(family.num_layers, heads, dim)

    def split(self, weights: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """[T, width] -> per-layer keys and values, each [1, kv_heads, T, head_dim] (views: gradients flow back)."""
        t = weights.shape[0]
        slots = weights.view(t, 2 * self.layers, self.kv_heads, self.head_dim).permute(1, 2, 0, 3)
        return [slots[2 * i].unsqueeze(0) for i in range(self.layers)], [
            slots[2 * i + 1].unsqueeze(0) for i in range(self.layers)
        ]

    def join(self, keys: list[torch.Tensor], values: list[torch.Tensor]) -> torch.Tensor:
        """Per-layer keys/values [1, kv_heads, T, head_dim] -> the [T, width] row layout."""
        slots = torch.stack([kv[0] for pair in zip(keys, values) for kv in pair])  # [2L, H, T, hd]
        t = slots.shape[2]
        return slots.permute(2, 0, 1, 3).reshape(t, self.width)

    def layer_kv(self, weights: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per-layer keys and values [kv_heads, T, head_dim] of `weights` [T, width], detached."""
        keys, values = self.split(weights.detach())
        return [k[0] for k in keys], [v[0] for v in values]


def prefix_of_embeddings(base: BaseModel, embeddings: torch.Tensor, shape: PrefixShape | None = None) -> torch.Tensor:
    """The [T, width] deep prompt equal to the plain prompt `embeddings` [T, d]: the keys/values `base` makes of it."""
    shape = shape or PrefixShape.of(base)
    with torch.no_grad():
        computed = prompt_prefix(base, embeddings.to(torch.float32))
        return shape.join(computed.keys, computed.values).to("cpu", torch.float32)
