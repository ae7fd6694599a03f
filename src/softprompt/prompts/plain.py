"""SoftPrompt (`--method prompt`): T input vectors [T, d] in front of the text (Lester et al. 2021).

Stored as Hugging Face PEFT's PROMPT_TUNING adapter, so PEFT loads ours and we load PEFT's (files.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import PromptFileError, SoftPromptError
from ..forward import PromptState, prompt_state
from ..model_names import resolvable_name
from ..models import BaseModel
from .base import BasePrompt
from .files import CONFIG_FILE, peft_common
from .initialize import Start, tile_rows
from .inspect_plain import Inspection, inspect_embeddings
from .meta import PromptMeta


class SoftPrompt(BasePrompt):
    """T trainable virtual-token embeddings, kept in fp32 whatever the model's dtype."""

    METHOD = "prompt"
    PEFT_TYPE = "PROMPT_TUNING"
    WEIGHTS = "embeddings"
    embeddings: nn.Parameter

    def __init__(
        self,
        embeddings: torch.Tensor,
        meta: PromptMeta | None = None,
        initial: torch.Tensor | None = None,
    ):
        if embeddings.dim() != 2 or embeddings.shape[0] == 0:
            raise SoftPromptError(f"a prompt is a [T, d] tensor with T >= 1, got shape {tuple(embeddings.shape)}")
        super().__init__(embeddings, meta, initial)

    @property
    def dim(self) -> int:
        return self.embeddings.shape[1]

    @property
    def token_dim(self) -> int:
        return self.dim

    def layout(self) -> dict[str, int]:
        return {"dim": self.dim}

    @classmethod
    def initial_weights(cls, base: BaseModel, start: Start) -> torch.Tensor:
        if start.file is None:
            return start.embeddings(base)
        source = cls.load(start.file, base, allow_mismatch=start.allow_mismatch).embeddings.detach()
        return tile_rows(source, start.num_virtual_tokens)

    @classmethod
    def of_weights(cls, base: BaseModel, weights: torch.Tensor, meta: PromptMeta) -> SoftPrompt:
        return cls(weights, meta, initial=weights)

    def forward(self) -> torch.Tensor:
        return self.embeddings

    @classmethod
    def state_of(
        cls, base: BaseModel, weights: torch.Tensor, *, share_prefix: bool = True, head: Sequence[int] = ()
    ) -> PromptState:
        return prompt_state(base, weights, share_prefix=share_prefix, head=head)

    def with_weights(self, weights: torch.Tensor, meta: PromptMeta | None = None) -> SoftPrompt:
        return SoftPrompt(weights, meta or self.meta, initial=self.initial)

    def peft_config(self, base: BaseModel | None) -> dict:
        """PEFT's PromptTuningConfig as JSON, so `PeftModel.from_pretrained(base, folder)` works."""
        family = base.family if base is not None else None
        text_init = (self.meta.init or "").startswith("text:")
        return {
            **peft_common(self.meta.base_model, self.num_virtual_tokens, base, self.PEFT_TYPE),
            "num_attention_heads": None if family is None else family.num_heads,
            "num_layers": None if family is None else family.num_layers,
            # One prompt for the encoder only: we never store PEFT's unused decoder half.
            "num_transformer_submodules": 1,
            "prompt_tuning_init": "TEXT" if text_init else "RANDOM",
            "prompt_tuning_init_text": self.meta.init[len("text:") :] if text_init else None,
            "token_dim": self.dim,
            "tokenizer_kwargs": None,
            "tokenizer_name_or_path": resolvable_name(self.meta.base_model) if text_init else None,
        }

    @classmethod
    def _from_file(
        cls, config: dict, tensor: torch.Tensor, meta: PromptMeta, initial: torch.Tensor | None, where: str
    ) -> SoftPrompt:
        t = config.get("num_virtual_tokens") or tensor.shape[0]
        # PEFT stores 2*T rows for seq2seq models (encoder and decoder); prompt tuning uses the first T.
        if tensor.shape[0] < t:
            raise PromptFileError(
                f"{where}: {CONFIG_FILE} says num_virtual_tokens={t} but the tensor has {tensor.shape[0]} rows"
            )
        return cls(tensor[:t], meta, initial=initial)

    def _misfit(self, base: BaseModel) -> str | None:
        if self.dim != base.hidden_size:
            return f"the prompt has dimension {self.dim} but model '{base.name}' has hidden size {base.hidden_size}"
        return None

    def input_embeddings(self) -> torch.Tensor:
        return self.embeddings

    def inspect(self, base: BaseModel, *, top_k: int = 5) -> Inspection:
        """Nearest vocabulary tokens, norms, drift and label clustering (inspect_plain.py)."""
        return inspect_embeddings(self, base, top_k=top_k)
