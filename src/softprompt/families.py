"""What the code needs to know about a model architecture, read in one place.

Every fact that differs between model families (GPT-2, Llama, Qwen2, Gemma 2/3,
Mistral, T5, ...) is looked up here and nowhere else: the context length, which
layers attend through a sliding window and how wide it is, the final-logit
softcap, the scale T5 applies before its tied head, the attention shape of each
layer (what a deep prompt's per-layer keys/values must look like), and where
the decoder body, the LM head and the transformer blocks live in the module
tree. A new architecture whose config or module names differ from these is one
change in this file.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .errors import SoftPromptError

FULL = "full_attention"
SLIDING = "sliding_attention"
UNBOUNDED = 2**31 - 1  # context length of models without absolute positions (T5's relative buckets)
# Attention implementations that take an explicit 4D mask, so sliding windows can be applied by position.
EXPLICIT_MASKS = ("sdpa", "eager")


def config_value(config, *names: str, default=None):
    """The first of `names` set on the (text part of the) config."""
    if config is None:
        return default
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return default


@dataclass(frozen=True)
class Family:
    """An architecture's facts, from its config (`Family.of(model.config)`; `BaseModel.family`)."""

    model_type: str
    seq2seq: bool
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    context_length: int  # positions for prompt + input + generated tokens
    sliding_window: int | None  # keys a sliding layer sees: those fewer than this many positions back
    layer_types: tuple[str, ...]  # FULL or SLIDING, one per layer
    masks_by_layer_type: bool  # the model takes {layer type: mask}; else one mask serves every layer
    logit_softcap: float | None  # Gemma 2/3: logits = cap * tanh(logits / cap)
    output_scale: float | None  # T5 with tied embeddings: hidden * d_model**-0.5 before the head
    attn_implementation: str | None
    decoder_start_token_id: int | None  # encoder-decoders: the token the decoder starts from

    def check_fits(self, tokens: int, virtual_tokens: int, *, where: str = "", answer: int = 0) -> None:
        """Refuse a row of `tokens` (input and target) that with the prompt runs past the model's positions.

        `answer`: the tokens after the input (a target, or room to generate), which a cut input keeps.
        """
        if virtual_tokens + tokens <= self.context_length:
            return
        room = max(2, self.context_length - virtual_tokens - answer)
        raise SoftPromptError(
            f"{where + ': ' if where else ''}the example takes {tokens} tokens (input and answer); with {virtual_tokens} virtual "
            f"tokens that is past the model's context of {self.context_length}: set --max-input-tokens "
            f"(at most {room}) to cut long inputs"
        )

    @classmethod
    def of(cls, config) -> Family:
        text = config.get_text_config()
        seq2seq = bool(getattr(config, "is_encoder_decoder", False))
        hidden = int(config_value(text, "hidden_size", "d_model", "n_embd"))
        layers = int(config_value(text, "num_hidden_layers", "num_layers", "n_layer"))
        heads = int(config_value(text, "num_attention_heads", "num_heads", "n_head"))
        kv_heads = int(config_value(text, "num_key_value_heads", default=heads))
        head_dim = int(config_value(text, "head_dim", "d_kv", default=hidden // heads))
        window = config_value(text, "sliding_window")
        declared = getattr(text, "layer_types", None)
        # Without declared types (Mistral-style) one window, if set, serves every layer.
        types = tuple(declared) if declared else (SLIDING if window else FULL,) * layers
        if SLIDING not in types:
            window = None
        length = config_value(text, "max_position_embeddings", "n_positions")
        scale = None
        if seq2seq and getattr(config, "scale_decoder_outputs", getattr(config, "tie_word_embeddings", False)):
            scale = hidden**-0.5
        return cls(
            model_type=str(getattr(config, "model_type", "")),
            seq2seq=seq2seq,
            hidden_size=hidden,
            num_layers=layers,
            num_heads=heads,
            num_kv_heads=kv_heads,
            head_dim=head_dim,
            context_length=int(length) if length else UNBOUNDED,
            sliding_window=int(window) if window else None,
            layer_types=types,
            masks_by_layer_type=bool(declared),
            logit_softcap=config_value(text, "final_logit_softcapping"),
            output_scale=scale,
            attn_implementation=getattr(config, "_attn_implementation", None),
            decoder_start_token_id=getattr(config, "decoder_start_token_id", None) if seq2seq else None,
        )

    @property
    def exact_windows(self) -> bool:
        """Sliding-window layers whose window we apply by position with explicit masks (see attention.py)."""
        return self.sliding_window is not None and self.attn_implementation in EXPLICIT_MASKS

    def kv_shape(self, layer: int) -> tuple[int, int]:
        """(key/value heads, head dim) of `layer`'s attention: the shape of a deep prompt's keys there."""
        if not 0 <= layer < self.num_layers:
            raise IndexError(f"layer {layer} outside 0..{self.num_layers - 1}")
        return self.num_kv_heads, self.head_dim


# -- where things live in the module tree -------------------------------------------


def decoder_body(model: nn.Module) -> nn.Module:
    """A decoder-only model without its LM head (LlamaModel, GPT2Model, Gemma3TextModel, ...)."""
    return model.base_model


def encoder_of(model: nn.Module) -> nn.Module:
    return model.get_encoder()


def decoder_of(model: nn.Module) -> nn.Module:
    """An encoder-decoder's decoder stack (without the LM head)."""
    return model.get_decoder()


def lm_head(model: nn.Module) -> nn.Module:
    return model.get_output_embeddings()


def transformer_blocks(model: nn.Module) -> list[nn.Module]:
    """The repeated transformer blocks: model.layers (Llama, Qwen, Gemma), transformer.h (GPT-2), ...

    Found as the largest ModuleList of identical blocks, so most families need no entry here.
    """
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    lists = [m for m in lists if len({type(b) for b in m}) == 1]
    if not lists:
        return []
    # Buffers count too: a quantised model's weights are buffers (softprompt.quant).
    return list(max(lists, key=lambda m: sum(t.numel() for t in (*m.parameters(), *m.buffers()))))


def softcap(logits: torch.Tensor, cap: float | None) -> torch.Tensor:
    """Gemma 2/3's final-logit squashing; identity without a cap."""
    return torch.tanh(logits / cap) * cap if cap else logits
