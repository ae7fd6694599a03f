"""LoRA over a quantised frozen base model (QLoRA): fp32 adapters on top of the quantised linear layers.

PEFT's LoRA cannot wrap softprompt's quantised linears (`quant.linear.QuantizedLinear`), even registered
as a custom module (`LoraConfig._register_custom_module`, PEFT 0.21): its module replacement moves each new
adapter to the device of the wrapped layer's `weight`, and a quantised layer's `weight` is an empty marker
on the meta device, so the adapters would lose their values. This file is the small wrapper instead, made
to be PEFT's LoRA in everything that decides the numbers and the files:

- the same target modules (PEFT's default per architecture) and the same random draws for the same seed
  (A as PEFT initialises it, B zeros), scaling alpha / r, no dropout;
- the adapter saved as PEFT saves it (adapter_config.json + adapter_model.safetensors, PEFT's tensor
  names), so `PeftModel.from_pretrained` loads it on the unquantised model.

The base model's quantised weights are shared with the copy, not copied: they are frozen, and only the
adapters train (their gradients are the only ones the backward makes; the quantised layers give their
input's gradient and nothing else).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from ..errors import SoftPromptError
from ..models import BaseModel

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


class LoraLinear(nn.Module):
    """`base_layer(x) + B(A(x)) * alpha / r`, with A [r, in] and B [out, r] trainable fp32 and the base frozen."""

    def __init__(self, base_layer: nn.Module, r: int, alpha: int, device: torch.device):
        super().__init__()
        self.base_layer = base_layer
        # Made on the CPU, then initialised, as PEFT's LoraLayer.update_layer does: the same draws for the same
        # seed (the CPU generator, whatever the device), then moved to the base layer's device.
        self.lora_A = nn.Linear(base_layer.in_features, r, bias=False, dtype=torch.float32)
        self.lora_B = nn.Linear(r, base_layer.out_features, bias=False, dtype=torch.float32)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.lora_A.to(device)
        self.lora_B.to(device)
        self.scaling = alpha / r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        delta = self.lora_B(self.lora_A(x.to(torch.float32))) * self.scaling
        return out + delta.to(out.dtype)


class QLoraAdapter:
    """The LoRA layers put into one model copy, and how to save them as PEFT does."""

    def __init__(self, model: nn.Module, layers: dict[str, LoraLinear], targets: list[str], r: int, alpha: int):
        self.model, self.layers, self.targets, self.r, self.alpha = model, layers, targets, r, alpha

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The adapter's tensors under PEFT's saved names (`base_model.model.<module>.lora_A.weight`)."""
        return {
            f"base_model.model.{name}.lora_{part}.weight": getattr(layer, f"lora_{part}").weight.detach().cpu()
            for name, layer in self.layers.items()
            for part in ("A", "B")
        }

    def save_pretrained(self, folder: str | Path) -> None:
        """PEFT's two adapter files in `folder` (finetune.save_lora writes them atomically)."""
        from peft import LoraConfig, TaskType

        folder = Path(folder)
        config = LoraConfig(
            task_type=TaskType.CAUSAL_LM,
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=0.0,
            target_modules=self.targets,
            base_model_name_or_path=getattr(self.model.config, "_name_or_path", None) or None,
        )
        folder.mkdir(parents=True, exist_ok=True)
        config.save_pretrained(str(folder))
        tensors = {k: v.contiguous() for k, v in self.state_dict().items()}
        save_file(tensors, str(folder / ADAPTER_WEIGHTS), metadata={"format": "pt"})


def default_targets(model: nn.Module) -> list[str]:
    """PEFT's default LoRA target modules for the model's architecture (what fp32 LoRA wraps)."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as TARGETS

    model_type = model.config.model_type
    if model_type not in TARGETS:
        raise SoftPromptError(f"LoRA: PEFT knows no default target modules for the {model_type} architecture")
    return list(TARGETS[model_type])


def shared_copy(model: nn.Module) -> nn.Module:
    """A copy of `model` whose frozen tensors are the original's (a new module tree over the same weights)."""
    memo = {id(t): t for t in [*model.parameters(), *model.buffers()] if not t.requires_grad}
    return copy.deepcopy(model, memo)


def qlora_copy(base: BaseModel, r: int, alpha: int, seed: int | None = None) -> tuple[BaseModel, QLoraAdapter]:
    """(BaseModel over a copy with LoRA layers on PEFT's target modules, the adapter); the base is untouched."""
    if base.is_seq2seq:
        raise SoftPromptError("LoRA on a quantised encoder-decoder model is not supported; use --quantize none")
    model = shared_copy(base.model)
    targets = default_targets(model)
    layers: dict[str, LoraLinear] = {}
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        for name, module in list(model.named_modules()):
            if name.rsplit(".", 1)[-1] not in targets or not hasattr(module, "in_features"):
                continue
            parent_name, _, child = name.rpartition(".")
            layers[name] = LoraLinear(module, r, alpha, base.device)
            setattr(model.get_submodule(parent_name), child, layers[name])
    if not layers:
        raise SoftPromptError(f"LoRA: none of the target modules {targets} is a linear layer in {base.name}")
    copied = BaseModel(model=model, tokenizer=base.tokenizer, name=f"{base.name} + LoRA", _fingerprint=base.fingerprint)
    return copied, QLoraAdapter(model, layers, targets, r, alpha)
