"""Optimisers and learning-rate schedules for the prompt.

Adafactor with the paper's setting (Lester et al.: constant LR 0.3, no
parameter scaling, no relative step) or AdamW. The schedule is a linear warmup
followed by constant, linear decay or cosine decay, as a LambdaLR whose state
is plain numbers (so checkpoints are JSON).

torch is imported inside the builders: the names and default LRs are read by
`softprompt --help` and the studio's settings, which must not load torch.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

OPTIMIZERS = ("adafactor", "adamw")
SCHEDULES = ("constant", "linear", "cosine")
DEFAULT_LR = {"adafactor": 0.3, "adamw": 0.01}


def build_optimizer(params: list[torch.nn.Parameter], name: str, lr: float, weight_decay: float = 0.0):
    import torch

    if name == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(
            params, lr=lr, weight_decay=weight_decay, scale_parameter=False, relative_step=False, warmup_init=False
        )
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")


def lr_factor(step: int, *, warmup_steps: int, total_steps: int, schedule: str) -> float:
    """Multiplier of the base LR for optimizer step `step` (0-based)."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    span = max(1, total_steps - warmup_steps)
    done = min(1.0, (step - warmup_steps) / span)
    if schedule == "linear":
        return 1.0 - done
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * done))
    raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")


def build_scheduler(optimizer, *, warmup_steps: int, total_steps: int, schedule: str):
    def factor(step: int) -> float:
        return lr_factor(step, warmup_steps=warmup_steps, total_steps=total_steps, schedule=schedule)

    from torch.optim.lr_scheduler import LambdaLR

    return LambdaLR(optimizer, factor)
