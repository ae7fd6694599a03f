"""TrainConfig: everything that determines a training run, and the one declaration of every training setting.

Each field is declared once, with its type, default, choices and help (`setting`). The `train`
flags, the studio's form (its schema, labels and validation) and `compare`'s per-method settings are
generated from these declarations (`settings()`), so a new field appears in each of them with no
other edit. Fields left unset (None) that a method's recipe covers (prompt length, LR, optimiser, warmup,
recompute, reparameterisation width) take the method's measured value (`prompts/registry.py`).

The module does not import torch, so `softprompt --help` and the studio's schema can show the
defaults without loading it.
"""

from __future__ import annotations

import math
import sys
import typing
from dataclasses import Field, asdict, dataclass, field, fields

from .errors import FieldError
from .optim import DEFAULT_LR, OPTIMIZERS, SCHEDULES
from .prompts.registry import DEFAULT_METHOD, GRADIENT_CHECKPOINTING, METHODS, REPARAMS
from .tasks import task_class, task_kinds
from .tasks.base import TRUNCATE_SIDES
from .typecheck import check_field_types

DEFAULT_STEPS = 300
# Settings that change how a run computes but not what it computes: --resume may change them.
RESULT_NEUTRAL = ("gradient_checkpointing",)
# Another optimiser than a recipe's: its default LR times this. On smollm2-135m (rotten-tomatoes, 60 steps)
# prefix tuning's projection reached 44% dev accuracy at AdamW 0.01 and 81% at 0.001.
REPARAM_LR_SCALE = {"none": 1.0, "mlp": 0.1, "residual": 1.0}
# Class balance (balance.py): auto corrects the loss and the decision when the training labels are imbalanced.
BALANCE = ("auto", "full", "off")
# Fields a recipe fills when the user leaves them unset.
FROM_RECIPE = ("num_virtual_tokens", "optimizer", "warmup_steps", "gradient_checkpointing", "reparam_hidden")


def setting(
    default: object,
    help: str,
    *,
    choices: tuple[str, ...] | None = None,
    label: str | None = None,
    basic: bool = False,
    default_text: str | None = None,
    cli: dict | None = None,
) -> Field:
    """A TrainConfig field with what every front end shows of it.

    `label`: the studio form's label (default: the field name in words); `basic`: on the form's first
    rows (the others under "More settings"); `default_text`: how help words a default that is not a
    plain value (a recipe's, a computed one); `cli`: extra argparse keywords for its flag.
    """
    meta = {"help": help, "choices": choices, "label": label, "basic": basic, "default_text": default_text}
    return field(default=default, metadata={**meta, "cli": dict(cli or {})})


def _per_method(attr: str) -> str:
    """A recipe field's default as help shows it: one value, or each method's."""
    values = {name: getattr(m.recipe, attr) for name, m in METHODS.items()}
    if attr == "lr":
        shown = {
            name: f"{lr['none']:g} (" + ", ".join(f"{rp} {v:g}" for rp, v in lr.items() if rp != "none") + ")"
            for name, lr in values.items()
        }
    else:
        shown = {name: "none" if v is None else str(v) for name, v in values.items()}
    if len(set(shown.values())) == 1:
        return f"the method's recipe: {next(iter(shown.values()))}"
    return "the method's recipe: " + ", ".join(f"{name} {v}" for name, v in shown.items())


@dataclass
class TrainConfig:
    """Everything that determines a training run (saved in checkpoints; resume refuses a different one)."""

    method: str = setting(
        DEFAULT_METHOD,
        "what trains: " + "; ".join(f"{m.name}: {m.help}" for m in METHODS.values()),
        choices=METHODS.keys(),  # a live view: a method registered later is a choice too
        basic=True,
    )
    reparam: str = setting(
        "none",
        "train through a network, folded into plain weights on save: mlp (P-tuning's encoder / prefix tuning's "
        "projection) or residual (residual prompt tuning)",
        choices=REPARAMS,
        label="Reparameterisation",
        basic=True,
    )
    reparam_hidden: int | None = setting(
        None,
        "width of the reparam network (none: the prompt's token dimension)",
        default_text=_per_method("reparam_hidden"),
        label="Reparam width",
    )
    num_virtual_tokens: int | None = setting(
        None, "prompt length T", default_text=_per_method("num_virtual_tokens"), label="Prompt length T", basic=True
    )
    init: str = setting(
        "labels",
        'labels | vocab | random | text:"..." | file:PROMPT_DIR',
        default_text="the task kind's: " + ", ".join(f"{task_class(k).default_init} for {k}" for k in task_kinds()),
    )
    optimizer: str | None = setting(
        None,
        "adamw, or adafactor (the paper's: constant LR 0.3, for T5-scale embeddings)",
        choices=OPTIMIZERS,
        default_text=_per_method("optimizer"),
        basic=True,
    )
    lr: float | None = setting(
        None,
        "learning rate",
        label="Learning rate",
        default_text=_per_method("lr") + f"; adafactor {DEFAULT_LR['adafactor']} (a tenth with reparam mlp)",
        basic=True,
    )
    weight_decay: float = setting(0.0, "AdamW weight decay")
    batch_size: int = setting(16, "examples per micro-batch", label="Batch", basic=True)
    grad_accum: int = setting(1, "micro-batches per optimiser step")
    steps: int | None = setting(
        None, "optimiser steps", default_text=f"{DEFAULT_STEPS} unless epochs is given", basic=True
    )
    epochs: float | None = setting(None, "train for this many passes over the data instead of steps")
    warmup_steps: int | None = setting(
        None, "linear LR warmup steps", default_text=_per_method("warmup_steps"), label="Warmup steps"
    )
    schedule: str = setting("cosine", "LR after warmup (decay lowers end-of-run noise)", choices=SCHEDULES)
    max_grad_norm: float | None = setting(1.0, "clip the gradient norm (0 = off)")
    eval_every: int = setting(50, "dev evaluation every N steps (and at the end)", label="Dev eval every", basic=True)
    patience: int | None = setting(None, "stop after N dev evaluations without improvement")
    eval_batch_size: int = setting(32, "examples per dev-evaluation batch")
    checkpoint_every: int = setting(50, "checkpoint every N steps")
    max_input_tokens: int | None = setting(
        None, "truncate longer inputs", default_text="the built-in dataset's hint, else the model's context"
    )
    truncate: str = setting("left", "which side of an over-long text to cut", choices=TRUNCATE_SIDES)
    seed: int = setting(0, "seed for init and data order", basic=True)
    bucket_batches: int = setting(50, "batches per length-sorted bucket (1 = no bucketing)")
    gradient_checkpointing: str | None = setting(
        None,
        "what the backward pass computes again instead of keeping in memory (same gradient): selective "
        "(element-wise work), full (the flag alone: each transformer block, for long inputs; far less memory "
        "for a second forward's time), off",
        choices=GRADIENT_CHECKPOINTING,
        default_text=_per_method("gradient_checkpointing"),
        label="Recompute",
        cli={"nargs": "?", "const": "full"},
    )
    balance: str = setting(
        "auto",
        "auto: when the training labels are imbalanced (the largest class over 3x the smallest), weight the "
        "loss by inverse square-root class frequency and decide by label scores raised by -1/2 log(training "
        "frequency) (stored in the prompt; eval, predict and serve apply it), so a rare class is not starved; "
        "full: weight by inverse class frequency (the classes weigh the same), plain decision; off: plain "
        "loss and decision",
        choices=BALANCE,
        label="Class balance",
    )

    def __post_init__(self):
        check_field_types(self)
        if self.method not in METHODS:
            raise FieldError("method", f"must be one of {', '.join(METHODS)}, got {self.method!r}")
        recipe = METHODS[self.method].recipe
        for name in FROM_RECIPE:
            if getattr(self, name) is None:
                setattr(self, name, getattr(recipe, name))
        for f in fields(self):
            allowed = f.metadata.get("choices")
            if allowed and getattr(self, f.name) not in allowed:
                raise FieldError(f.name, f"must be one of {', '.join(allowed)}, got {getattr(self, f.name)!r}")
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
        if self.lr is not None:
            return self.lr
        recipe = METHODS[self.method].recipe
        if self.optimizer == recipe.optimizer:
            return recipe.lr[self.reparam]
        return DEFAULT_LR[self.optimizer] * REPARAM_LR_SCALE[self.reparam]

    def total_steps(self, n_train: int) -> int:
        if self.steps is not None:
            return self.steps
        if self.epochs is not None:
            per_epoch = math.ceil(n_train / self.batch_size) / self.grad_accum
            return max(1, math.ceil(self.epochs * per_epoch))
        return DEFAULT_STEPS

    def summary(self) -> str:
        """The settings a run trains with, in one line (train's start line, `info`, reports)."""
        how = "" if self.reparam == "none" else f" through a {self.reparam} network"
        return (
            f"{self.method}{how}, T={self.num_virtual_tokens}, init={self.init}, {self.optimizer} "
            f"lr={self.learning_rate:g}, warmup {self.warmup_steps}, batch {self.batch_size}x{self.grad_accum}, "
            f"balance={self.balance}"
        )

    def differences(self, other: dict) -> list[str]:
        """Settings that differ from `other` (a saved config; a setting it predates counts as its default)
        and would change the result."""
        mine = asdict(self)
        # A checkpoint from before methods trained a plain prompt; one from before recipes stored every value.
        default = asdict(TrainConfig(method=other.get("method", "prompt")))
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


@dataclass(frozen=True)
class Setting:
    """One declared TrainConfig field, as the front ends generate it."""

    name: str
    type: type  # int | float | str (the value's type when set)
    optional: bool  # None is a value (unset: the default rule)
    default: object
    help: str
    choices: tuple[str, ...] | None
    label: str
    basic: bool
    default_text: str  # the default as help shows it
    cli: dict

    def help_text(self) -> str:
        return f"{self.help} (default: {self.default_text})"


def config_class() -> type[TrainConfig]:
    """TrainConfig as this module holds it now (a test may put a subclass with a toy field in its place)."""
    return sys.modules[__name__].TrainConfig


def settings(cls: type | None = None) -> tuple[Setting, ...]:
    """Every declared training setting of `cls` (default: TrainConfig), in declaration order."""
    cls = cls or config_class()
    hints = typing.get_type_hints(cls)
    out = []
    for f in fields(cls):
        want = hints[f.name]
        options = [t for t in typing.get_args(want) if t is not type(None)] or [want]
        meta = f.metadata
        shown = meta.get("default_text") or ("none" if f.default is None else str(f.default))
        out.append(
            Setting(
                name=f.name,
                type=options[0],
                optional=type(None) in typing.get_args(want),
                default=f.default,
                help=meta.get("help", ""),
                choices=meta.get("choices"),
                label=meta.get("label") or f.name.replace("_", " ").capitalize(),
                basic=bool(meta.get("basic")),
                default_text=shown,
                cli=dict(meta.get("cli") or {}),
            )
        )
    return tuple(out)


def setting_names() -> tuple[str, ...]:
    return tuple(f.name for f in fields(config_class()))


def label_of(name: str) -> str | None:
    """A setting's form label (None for a name that is no setting)."""
    return next((s.label for s in settings() if s.name == name), None)
