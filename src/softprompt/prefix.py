"""PrefixPrompt: a deep prompt (prefix tuning, P-tuning v2): trained keys and values for every layer.

A plain prompt trains T input vectors and lets the frozen model turn them into
each layer's keys/values; a deep prompt trains those keys/values directly, so
every layer gets its own T trainable entries. The forward takes it as it takes
a plain prompt's computed prefix (`forward.PrefixKV`): no model run is needed
to make it, and the input tokens attend to it exactly as to a plain prompt.

File format: Hugging Face PEFT's PREFIX_TUNING adapter, so PEFT loads ours and
we load PEFT's. `prompt_embeddings` is [T, L * 2 * kv_heads * head_dim]; row t
holds, for each layer i, the key (slot 2i) then the value (slot 2i+1) of virtual
token t, each kv_heads x head_dim. Grouped-query models store their key/value
heads, not their query heads (PEFT's `token_dim = kv_heads * head_dim`,
`num_attention_heads = kv_heads`). Keys are stored as the attention sees them
(after any rotary embedding): a virtual token has no position of its own.

Decoder-only models only: an encoder-decoder takes a plain prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .errors import PromptFileError, SoftPromptError
from .forward import PrefixKV, prompt_prefix
from .models import BaseModel
from .prompt import (
    BasePrompt,
    PromptMeta,
    check_length,
    initial_embeddings,
    new_meta,
    peft_common,
    peft_type_of,
    tile_rows,
)


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


class PrefixPrompt(BasePrompt):
    """T virtual tokens' keys and values in every layer: [T, L * 2 * kv_heads * head_dim], fp32."""

    METHOD = "prefix"
    PEFT_TYPE = "PREFIX_TUNING"

    def __init__(
        self,
        prefix: torch.Tensor,
        shape: PrefixShape,
        meta: PromptMeta | None = None,
        initial: torch.Tensor | None = None,
    ):
        super().__init__()
        if prefix.dim() != 2 or prefix.shape[0] == 0 or prefix.shape[1] != shape.width:
            raise SoftPromptError(
                f"a deep prompt is a [T, {shape.width}] tensor with T >= 1 ({shape.layers} layers x key and value x "
                f"{shape.kv_heads} heads x {shape.head_dim}), got shape {tuple(prefix.shape)}"
            )
        self.shape = shape
        self.prefix = nn.Parameter(prefix.detach().to(torch.float32).clone())
        self.meta = meta or PromptMeta()
        self.initial = None if initial is None else initial.detach().to(torch.float32).clone()

    @property
    def weights(self) -> torch.Tensor:
        return self.prefix

    @property
    def shape_text(self) -> str:
        s = self.shape
        return f"{self.num_virtual_tokens}x{s.layers}x2x{s.kv_heads}x{s.head_dim}"

    @property
    def token_dim(self) -> int:
        return self.shape.token_dim

    def layout(self) -> dict[str, int]:
        s = self.shape
        return {"layers": s.layers, "kv_heads": s.kv_heads, "head_dim": s.head_dim}

    @classmethod
    def initialize(
        cls,
        base: BaseModel,
        num_virtual_tokens: int = 20,
        init: str = "vocab",
        *,
        label_words: list[str] | None = None,
        seed: int = 0,
        meta: PromptMeta | None = None,
        allow_mismatch: bool = False,
    ) -> PrefixPrompt:
        """A new deep prompt for `base`, starting as the keys/values the model makes of a plain prompt's `init`.

        So at step 0 it answers exactly as the plain prompt with that init would; `file:` takes
        a deep prompt folder as it is, or runs a plain prompt folder through the model.
        """
        shape = PrefixShape.of(base)
        check_length(num_virtual_tokens)
        path = init[len("file:") :] if init.startswith("file:") else None
        if path is not None and peft_type_of(Path(path)) == cls.PEFT_TYPE:
            source = cls.load(path, base, allow_mismatch=allow_mismatch).prefix.detach()
            weights = tile_rows(source, num_virtual_tokens)
        else:
            gen = torch.Generator().manual_seed(seed)
            emb = initial_embeddings(base, num_virtual_tokens, init, label_words, gen, allow_mismatch=allow_mismatch)
            weights = prefix_of_embeddings(base, emb, shape)
        return cls(weights, shape, new_meta(base, meta, init), initial=weights)

    @classmethod
    def state_of(cls, base: BaseModel, weights: torch.Tensor, *, share_prefix: bool = True) -> PrefixKV:
        # Never inline: a deep prompt has no input vectors, and making it runs no block (so FSDP is fine too).
        keys, values = PrefixShape.of(base).split(weights.to(device=base.device, dtype=base.dtype))
        return PrefixKV.of_layers(keys, values)

    def with_weights(self, weights: torch.Tensor, meta: PromptMeta | None = None) -> PrefixPrompt:
        return PrefixPrompt(weights, self.shape, meta or self.meta, initial=self.initial)

    def layer_kv(self, weights: torch.Tensor | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per-layer keys and values [kv_heads, T, head_dim] of `weights` (default: this prompt's), detached."""
        keys, values = self.shape.split((self.prefix if weights is None else weights).detach())
        return [k[0] for k in keys], [v[0] for v in values]

    def peft_config(self, base: BaseModel | None) -> dict:
        s = self.shape
        return {
            **peft_common(self, base, self.PEFT_TYPE),
            "encoder_hidden_size": s.token_dim,
            "init_weights": None,
            "num_attention_heads": s.kv_heads,
            "num_layers": s.layers,
            "num_transformer_submodules": 1,
            # Trained through an MLP or not, what is stored is the keys/values themselves.
            "prefix_projection": False,
            "token_dim": s.token_dim,
        }

    @classmethod
    def _from_file(
        cls, config: dict, tensor: torch.Tensor, meta: PromptMeta, initial: torch.Tensor | None, where: str
    ) -> PrefixPrompt:
        try:
            layers, heads, token_dim = (int(config[k]) for k in ("num_layers", "num_attention_heads", "token_dim"))
        except (KeyError, TypeError, ValueError):
            raise PromptFileError(
                f"{where}: a PREFIX_TUNING config needs num_layers, num_attention_heads and token_dim"
            ) from None
        if heads < 1 or token_dim % heads:
            raise PromptFileError(f"{where}: token_dim {token_dim} is not a multiple of num_attention_heads {heads}")
        if config.get("num_transformer_submodules", 1) != 1:
            raise PromptFileError(f"{where}: an encoder-decoder prefix (two submodules) is not supported")
        shape = PrefixShape(layers, heads, token_dim // heads)
        t = config.get("num_virtual_tokens") or tensor.shape[0]
        if tensor.shape != (t, shape.width):
            raise PromptFileError(
                f"{where}: the config says {t} virtual tokens x {shape.width} numbers "
                f"({layers} layers x key and value x {token_dim}), but the tensor is {tuple(tensor.shape)}"
            )
        if initial is not None and initial.shape != tensor.shape:
            initial = None  # from a deep prompt of another length (file: init): no drift to show
        return cls(tensor, shape, meta, initial=initial)

    def _misfit(self, base: BaseModel) -> str | None:
        if base.is_seq2seq:
            return f"this deep prompt needs a decoder-only model, and '{base.name}' is an encoder-decoder"
        want = PrefixShape.of(base)
        if want != self.shape:
            return (
                f"the deep prompt has {self.shape.layers} layers of {self.shape.kv_heads} key/value heads x "
                f"{self.shape.head_dim}, but model '{base.name}' has {want.layers} of {want.kv_heads} x {want.head_dim}"
            )
        return None


def prefix_of_embeddings(base: BaseModel, embeddings: torch.Tensor, shape: PrefixShape | None = None) -> torch.Tensor:
    """The [T, width] deep prompt equal to the plain prompt `embeddings` [T, d]: the keys/values `base` makes of it."""
    shape = shape or PrefixShape.of(base)
    with torch.no_grad():
        computed = prompt_prefix(base, embeddings.to(torch.float32))
        return shape.join(computed.keys, computed.values).to("cpu", torch.float32)
