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

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ..errors import PromptFileError, SoftPromptError
from ..forward import PrefixKV, after_head
from ..models import BaseModel
from .base import BasePrompt
from .files import peft_common, peft_type_of
from .initialize import Start, tile_rows
from .inspect_prefix import PrefixInspection, inspect_layers
from .meta import PromptMeta
from .plain import SoftPrompt
from .prefix_layout import PrefixShape, prefix_of_embeddings


class PrefixPrompt(BasePrompt):
    """T virtual tokens' keys and values in every layer: [T, L * 2 * kv_heads * head_dim], fp32."""

    METHOD = "prefix"
    PEFT_TYPE = "PREFIX_TUNING"
    WEIGHTS = "prefix"
    prefix: nn.Parameter

    def __init__(
        self,
        prefix: torch.Tensor,
        shape: PrefixShape,
        meta: PromptMeta | None = None,
        initial: torch.Tensor | None = None,
    ):
        if prefix.dim() != 2 or prefix.shape[0] == 0 or prefix.shape[1] != shape.width:
            raise SoftPromptError(
                f"a deep prompt is a [T, {shape.width}] tensor with T >= 1 ({shape.layers} layers x key and value x "
                f"{shape.kv_heads} heads x {shape.head_dim}), got shape {tuple(prefix.shape)}"
            )
        super().__init__(prefix, meta, initial)
        self.shape = shape

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
    def initial_weights(cls, base: BaseModel, start: Start) -> torch.Tensor:
        """The keys/values the model makes of a plain prompt's start, so at step 0 a deep prompt answers exactly
        as the plain prompt with that init would; `file:` takes a deep prompt folder as it is, or runs a plain
        prompt folder through the model."""
        shape = PrefixShape.of(base)
        if start.file is not None and peft_type_of(Path(start.file)) == cls.PEFT_TYPE:
            source = cls.load(start.file, base, allow_mismatch=start.allow_mismatch).prefix.detach()
            return tile_rows(source, start.num_virtual_tokens)
        return prefix_of_embeddings(base, SoftPrompt.initial_weights(base, start), shape)

    @classmethod
    def of_weights(cls, base: BaseModel, weights: torch.Tensor, meta: PromptMeta) -> PrefixPrompt:
        return cls(weights, PrefixShape.of(base), meta, initial=weights)

    @classmethod
    def state_of(
        cls, base: BaseModel, weights: torch.Tensor, *, share_prefix: bool = True, head: Sequence[int] = ()
    ) -> PrefixKV:
        # Never inline: a deep prompt has no input vectors, and making it runs no block (so FSDP is fine too).
        keys, values = PrefixShape.of(base).split(weights.to(device=base.device, dtype=base.dtype))
        return after_head(base, head, PrefixKV.of_layers(keys, values))

    def with_weights(self, weights: torch.Tensor, meta: PromptMeta | None = None) -> PrefixPrompt:
        return PrefixPrompt(weights, self.shape, meta or self.meta, initial=self.initial)

    def layer_kv(self, weights: torch.Tensor | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per-layer keys and values [kv_heads, T, head_dim] of `weights` (default: this prompt's), detached."""
        return self.shape.layer_kv(self.prefix if weights is None else weights)

    def peft_config(self, base: BaseModel | None) -> dict:
        s = self.shape
        return {
            **peft_common(self.meta.base_model, self.num_virtual_tokens, base, self.PEFT_TYPE),
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

    def inspect(self, base: BaseModel, *, top_k: int = 5) -> PrefixInspection:
        """Per-layer key/value norms and drift (inspect_prefix.py): keys/values have no nearest tokens."""
        return inspect_layers(self, self.shape, base)
