"""TrainConfig: everything that determines a training run, and the one home of the training defaults.

Every front end (the `train` flags, the studio's form, quickstart, compare, the benchmarks)
reads its defaults from this dataclass. The module does not import torch, so `softprompt
--help` and the studio's settings can show the defaults without loading it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from .errors import FieldError
from .optim import DEFAULT_LR, OPTIMIZERS, SCHEDULES
from .typecheck import check_field_types

DEFAULT_STEPS = 300
TRUNCATE_SIDES = ("left", "right")
# Prompt methods (methods.py maps each to its class): plain input vectors, or keys/values in every layer.
METHODS = ("prompt", "prefix")
# How the prompt is parameterised while it trains (reparam.py); always folded into plain weights on save.
REPARAMS = ("none", "mlp", "residual")
# What the backward pass keeps (recompute.py; that module imports torch, so the names are repeated here).
GRADIENT_CHECKPOINTING = ("off", "selective", "full")
# Settings that change how a run computes but not what it computes: --resume may change them.
RESULT_NEUTRAL = ("gradient_checkpointing",)
# The default LR is the optimizer's times this. An MLP's weights move every output at once: on smollm2-135m
# (rotten-tomatoes, 60 steps) prefix tuning's projection reached 44% dev accuracy at AdamW 0.01 and 81% at 0.001.
REPARAM_LR_SCALE = {"none": 1.0, "mlp": 0.1, "residual": 1.0}


@dataclass
class TrainConfig:
    """Everything that determines a training run (saved in checkpoints; resume refuses a different one)."""

    method: str = "prompt"  # prompt (input vectors: prompt tuning) | prefix (keys/values per layer: prefix tuning)
    reparam: str = "none"  # none | mlp (P-tuning / prefix projection) | residual (residual prompt tuning)
    reparam_hidden: int | None = None  # the reparam MLP's width; None: the prompt's token dimension (as PEFT)
    num_virtual_tokens: int = 20  # prompt length T
    init: str = "labels"  # labels | vocab | random | text:"..." | file:PATH
    # adamw by measurement: on SmolLM2-135M (embedding std 0.136) the paper's Adafactor LR 0.3
    # moves each prompt value by ~0.3 per step and the loss rose; adafactor 0.03 trailed adamw 0.01.
    optimizer: str = "adamw"  # adamw | adafactor (the paper: constant LR 0.3, for T5-scale embeddings)
    lr: float | None = None  # None = 0.01 for adamw, 0.3 for adafactor (a tenth with reparam mlp)
    weight_decay: float = 0.0
    batch_size: int = 16  # examples per micro-batch
    grad_accum: int = 1  # micro-batches per optimiser step
    steps: int | None = None  # optimiser steps; None = from epochs, else DEFAULT_STEPS
    epochs: float | None = None
    warmup_steps: int = 0
    schedule: str = "cosine"  # constant | linear | cosine (after warmup); decay lowers end-of-run noise
    max_grad_norm: float | None = 1.0  # None or 0 = no clipping
    eval_every: int = 50  # dev evaluation every N steps (and at the end)
    patience: int | None = None  # stop after N evaluations without improvement
    eval_batch_size: int = 32
    checkpoint_every: int = 50
    max_input_tokens: int | None = None  # inputs longer than this are truncated
    truncate: str = "left"  # which side of the text to cut
    seed: int = 0
    bucket_batches: int = 50  # batches per length-sorted bucket (1 = no bucketing)
    # selective: recompute element-wise work in backward (less memory, little time); full: rerun each
    # transformer block in backward (far less memory, a second forward); off. Same gradient either way.
    gradient_checkpointing: str = "selective"

    def __post_init__(self):
        check_field_types(self)
        choices = (
            ("method", METHODS), ("reparam", REPARAMS), ("optimizer", OPTIMIZERS), ("schedule", SCHEDULES),
            ("truncate", TRUNCATE_SIDES), ("gradient_checkpointing", GRADIENT_CHECKPOINTING),
        )  # fmt: skip
        for name, allowed in choices:
            if getattr(self, name) not in allowed:
                raise FieldError(name, f"must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.steps is not None and self.epochs is not None:
            raise FieldError("steps", lambda name: f"give {name('steps')} or {name('epochs')}, not both")
        at_least_one = (
            "num_virtual_tokens", "batch_size", "grad_accum", "eval_every", "eval_batch_size", "checkpoint_every",
            "bucket_batches", "steps", "patience", "reparam_hidden",
        )  # fmt: skip
        for name in at_least_one:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise FieldError(name, f"must be at least 1, got {value}")
        if self.epochs is not None and not self.epochs > 0:
            raise FieldError("epochs", f"must be positive, got {self.epochs}")
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise FieldError("lr", f"must be a positive number, got {self.lr}")
        if self.warmup_steps < 0:
            raise FieldError("warmup_steps", f"must be >= 0, got {self.warmup_steps}")
        if self.max_input_tokens is not None and self.max_input_tokens < 2:
            raise FieldError("max_input_tokens", f"must be at least 2, got {self.max_input_tokens}")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer] * REPARAM_LR_SCALE[self.reparam]

    def total_steps(self, n_train: int) -> int:
        if self.steps is not None:
            return self.steps
        if self.epochs is not None:
            per_epoch = math.ceil(n_train / self.batch_size) / self.grad_accum
            return max(1, math.ceil(self.epochs * per_epoch))
        return DEFAULT_STEPS

    def differences(self, other: dict) -> list[str]:
        """Settings that differ from `other` (a saved config; a setting it predates counts as its default)
        and would change the result."""
        mine, default = asdict(self), asdict(TrainConfig())
        saved = {k: other.get(k, default[k]) for k in mine}
        return [
            f"{k}: checkpoint {saved[k]!r}, now {mine[k]!r}"
            for k in mine
            if saved[k] != mine[k] and k not in RESULT_NEUTRAL
        ]

    @classmethod
    def from_dict(cls, raw: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})
