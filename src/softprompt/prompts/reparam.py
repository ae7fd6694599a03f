"""Reparameterised training: a prompt's weights made by a small network while it trains, folded away on save.

`--reparam`:
- `none`: the weights are the trained parameters.
- `mlp`: an MLP makes the weights from trainable inputs. For a plain prompt it is
  P-tuning's encoder (PEFT's P_TUNING MLP: Linear-ReLU-Linear-ReLU-Linear on
  [T, d] inputs, which start at the prompt's init); for a deep prompt, prefix
  tuning's projection (PEFT's `prefix_projection`: [T, token_dim] inputs ->
  Linear-Tanh-Linear -> [T, L * 2 * token_dim]). Same structure and numbers as
  PEFT's, so the tests compare the two directly.
- `residual`: weights = x + LayerNorm(up(ReLU(down(x)))) (residual prompt
  tuning, Razdaibiedina et al. 2023), x starting at the prompt's init and the
  LayerNorm's gain at zero, so training starts exactly from the initialised prompt.

The network only shapes the optimisation: what the prompt file stores is its
output (`TrainablePrompt.fold`), a plain prompt or prefix that serves at no
extra cost and that PEFT reads as an ordinary PROMPT_TUNING/PREFIX_TUNING
adapter. Checkpoints keep the network's parameters, so a resumed run continues
exactly. The network's initial weights come from a generator seeded by the run's
seed: the same config gives the same network on every rank and every resume.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import SoftPromptError
from ..forward import PromptState
from ..models import BaseModel
from .base import BasePrompt
from .meta import PromptMeta
from .registry import REPARAMS


class Direct(nn.Module):
    """No reparameterisation: the weights are the parameter."""

    def __init__(self, weights: torch.Tensor):
        super().__init__()
        self.weights = nn.Parameter(weights.detach().to(torch.float32).clone())

    def forward(self) -> torch.Tensor:
        return self.weights


class EncodedPrompt(nn.Module):
    """weights = start + mlp(inputs): P-tuning's encoder (plain prompts) or prefix tuning's projection (deep
    prompts), learning the change from the init (`start`, fixed: a buffer remade from the seed on resume)."""

    def __init__(self, inputs: torch.Tensor, mlp: nn.Sequential, start: torch.Tensor):
        super().__init__()
        self.inputs = nn.Parameter(inputs.detach().to(torch.float32).clone())
        self.mlp = mlp
        self.register_buffer("start", start.detach().to(torch.float32).clone(), persistent=False)

    def forward(self) -> torch.Tensor:
        return self.start + self.mlp(self.inputs)


class ResidualPrompt(nn.Module):
    """weights = x + LayerNorm(up(ReLU(down(x)))), the LayerNorm's gain starting at zero (output = x at step 0)."""

    def __init__(self, start: torch.Tensor, hidden: int, gen: torch.Generator):
        super().__init__()
        width = start.shape[1]
        self.inputs = nn.Parameter(start.detach().to(torch.float32).clone())
        self.mlp = nn.Sequential(_linear(width, hidden, gen), nn.ReLU(), _linear(hidden, width, gen))
        self.norm = nn.LayerNorm(width)
        nn.init.zeros_(self.norm.weight)

    def forward(self) -> torch.Tensor:
        return self.inputs + self.norm(self.mlp(self.inputs))


def _linear(fan_in: int, fan_out: int, gen: torch.Generator) -> nn.Linear:
    """nn.Linear with its default init (uniform in +-1/sqrt(fan_in)), drawn from `gen` rather than the global RNG."""
    layer = nn.Linear(fan_in, fan_out)
    bound = 1 / math.sqrt(fan_in)
    with torch.no_grad():
        for param in (layer.weight, layer.bias):
            param.copy_(torch.rand(param.shape, generator=gen) * 2 * bound - bound)
    return layer


def build_encoder(prompt: BasePrompt, reparam: str, *, hidden: int | None = None, seed: int = 0) -> nn.Module:
    """The module whose output (no inputs) is `prompt`'s weights while it trains; starts from prompt.weights
    (mlp for a deep prompt: from PEFT's random inputs, as prefix tuning does)."""
    if reparam not in REPARAMS:
        raise SoftPromptError(f"--reparam must be one of {', '.join(REPARAMS)}, got {reparam!r}")
    start = prompt.weights.detach()
    if reparam == "none":
        return Direct(start)
    gen = torch.Generator().manual_seed(seed)
    dim = prompt.token_dim  # d for a plain prompt, kv_heads x head_dim for a deep one
    hidden = hidden or dim  # PEFT's encoder_hidden_size default
    if reparam == "residual":
        return ResidualPrompt(start, hidden, gen)
    width = start.shape[1]
    if width == dim:  # a plain prompt: P-tuning's MLP
        mlp = nn.Sequential(
            _linear(dim, hidden, gen), nn.ReLU(), _linear(hidden, hidden, gen), nn.ReLU(), _linear(hidden, dim, gen)
        )
        inputs = start
    else:  # a deep prompt: prefix tuning's projection, from token_dim-sized inputs (PEFT: an nn.Embedding, N(0, 1))
        mlp = nn.Sequential(_linear(dim, hidden, gen), nn.Tanh(), _linear(hidden, width, gen))
        inputs = torch.randn(start.shape[0], dim, generator=gen)
    with torch.no_grad():  # the MLP's output starts at zero, so the prompt starts exactly at its init
        mlp[-1].weight.zero_()
        mlp[-1].bias.zero_()
    return EncodedPrompt(inputs, mlp, _offset(start))


def _offset(start: torch.Tensor) -> torch.Tensor:
    """What the MLP's output is added to: the init itself, every slot its own row.

    PEFT's default init makes random vectors of another scale (a deep prompt's keys/values far from
    the model's own), which at compare's 50-step budget left both MLP methods near chance. Starting
    every slot at the init's mean row instead (an earlier fix) gave a rank-one prompt that had lost
    the label words, whose slots parted slowly at a tenth of the LR: the cause found for P-tuning
    predicting no example of a whole class after 50 steps (benchmarks/results/recipe/ptuning.md). From the init
    itself the MLP only learns the change; the last layer's weight still gets its gradient (the
    hidden layer is not zero) and trains.
    """
    return start


class TrainablePrompt:
    """A prompt while it trains: its method (the artefact it folds into) and the module that makes its weights.

    Only the encoder's parameters train; the artefact is made from its output when needed.
    """

    def __init__(self, prompt: BasePrompt, reparam: str = "none", *, hidden: int | None = None, seed: int = 0):
        self.reparam = reparam
        self.encoder = build_encoder(prompt, reparam, hidden=hidden, seed=seed)
        start = self.fold()
        self._template = prompt.with_weights(start)
        self._template.initial = start  # drift is measured from where training started

    def parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters())

    def named_tensors(self) -> dict[str, torch.Tensor]:
        """The encoder's parameters by name: what a checkpoint stores to resume exactly."""
        return {name: p.detach() for name, p in self.encoder.named_parameters()}

    def load_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, param in self.encoder.named_parameters():
                param.copy_(tensors[name])

    def weights(self) -> torch.Tensor:
        """The prompt's [T, width] weights now (differentiable in the encoder's parameters)."""
        return self.encoder()

    def state(self, base: BaseModel, *, share_prefix: bool = True) -> PromptState:
        return self._template.placed_state(base, self.weights(), share_prefix=share_prefix)

    def fold(self) -> torch.Tensor:
        """The weights as plain numbers: what the prompt file stores."""
        with torch.no_grad():
            return self.weights().detach().clone()

    def artefact(self, weights: torch.Tensor | None = None, meta: PromptMeta | None = None) -> BasePrompt:
        """The method's prompt holding `weights` (default: the folded weights now)."""
        return self._template.with_weights(self.fold() if weights is None else weights, meta)

    @property
    def meta(self) -> PromptMeta:
        return self._template.meta

    @property
    def num_parameters(self) -> int:
        """Numbers trained (the encoder's, which may be more than the folded prompt's)."""
        return sum(p.numel() for p in self.encoder.parameters())
