"""The prompt methods and their measured recipes: the one list every front end derives its choices from.

A *method* is what trains and what the prompt file holds: `prompt` (T input vectors, prompt tuning)
or `prefix` (T keys/values in every layer: prefix tuning / P-tuning v2). `--method`, the studio's
form, `compare`'s entries, the accuracy benchmark and the PEFT loaders (`methods.py`, which maps each
name to its class) all read this module. A method defined elsewhere (a plugin, a test) is added with
`methods.register_prompt_method`, which calls `register_method` here. A *reparameterisation* (`reparam`) is how a method's weights
are made while it trains; `compare` also runs named pairs of the two (`VARIANTS`: p-tuning is the
prompt method through an MLP).

Each method carries its **recipe**: the settings it trains with when the user chooses none (prompt
length, LR per reparameterisation, optimiser, warmup, recompute). `TrainConfig` fills its unset fields from
here, so `train`, `compare`, the studio, quickstart and the Python API get the same defaults. The
evidence for each figure is in docs/methods.md ("Defaults").

This module imports no torch: `softprompt --help` and the studio's schema read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

# How a prompt is parameterised while it trains (reparam.py); always folded into plain weights on save.
REPARAMS = ("none", "mlp", "residual")
# What the backward pass keeps (recompute.py).
GRADIENT_CHECKPOINTING = ("off", "selective", "full")


@dataclass(frozen=True)
class Recipe:
    """A method's measured defaults (AdamW); a field the user sets wins over these."""

    num_virtual_tokens: int
    lr: Mapping[str, float]  # AdamW LR per reparam: an MLP's weights move every output at once
    optimizer: str = "adamw"
    warmup_steps: int = 0  # linear LR warmup before the cosine decay: steadier seeds on a short budget
    gradient_checkpointing: str = "selective"  # same gradient either way: memory for a little time
    reparam_hidden: int | None = None  # None: the prompt's token dimension (as PEFT)
    evidence: str = ""


@dataclass(frozen=True)
class Method:
    name: str  # train's --method, TrainConfig.method, the prompt file's method
    peft_type: str  # the PEFT folder type it reads and writes
    help: str
    recipe: Recipe
    decoder_only: bool = False  # refuses encoder-decoder models


@dataclass(frozen=True)
class Variant:
    """A named (method, reparam) pair, as `compare` and the accuracy benchmark run it."""

    name: str
    title: str
    method: str
    reparam: str = "none"
    settings: Mapping[str, object] = field(default_factory=dict)  # TrainConfig fields beyond the recipe


_METHODS = (
    Method(
        "prompt",
        "PROMPT_TUNING",
        "T input vectors in front of the text (prompt tuning, Lester et al. 2021)",
        Recipe(
            num_virtual_tokens=20,
            lr=MappingProxyType({"none": 0.01, "mlp": 0.01, "residual": 0.01}),
            evidence="docs/accuracy.md: plain prompts at T=20, LR 0.01 trail LoRA r=8 by 0.7 (rotten-tomatoes), "
            "1.1 (sms-spam) and 6.1 (trec) points at 50 steps; P-tuning's MLP at LR 0.01 from the init: "
            "benchmarks/results/recipe/ptuning.md",
        ),
    ),
    Method(
        "prefix",
        "PREFIX_TUNING",
        "T keys/values in every layer (prefix tuning / P-tuning v2; decoder-only models)",
        Recipe(
            num_virtual_tokens=10,
            lr=MappingProxyType({"none": 0.015, "mlp": 0.001, "residual": 0.01}),
            warmup_steps=5,
            evidence="docs/accuracy.md: T=10 at LR 0.015 with a 5-step warmup is within 1 point and 0.01 "
            "macro-F1 of LoRA r=8 at 50 steps on the four built-in tasks and two imbalanced variants (LR 0.02 "
            "without warmup: rotten-tomatoes -2.1 points; LR 0.01: bbc-news -0.013 macro-F1); "
            "the projection (mlp) reached 81% dev accuracy at 0.001 against 44% at 0.01",
        ),
        decoder_only=True,
    ),
)
# The only module-level state here: the built-in methods, and those registered at import (plugins, tests).
_REGISTERED: dict[str, Method] = {m.name: m for m in _METHODS}
METHODS: Mapping[str, Method] = MappingProxyType(_REGISTERED)  # a live view: registered methods show at once
# The method a run gets when the user names none: chosen by measurement (docs/methods.md, "Defaults").
DEFAULT_METHOD = "prefix"

VARIANTS: Mapping[str, Variant] = MappingProxyType(
    {
        v.name: v
        for v in (
            Variant("prompt-tuning", "Prompt tuning (softprompt)", "prompt"),
            Variant("prefix-tuning", "Prefix tuning (softprompt)", "prefix"),
            Variant("p-tuning", "P-tuning (softprompt)", "prompt", "mlp"),
        )
    }
)


def method_names() -> tuple[str, ...]:
    """Every method's name, the built-in ones first (what `--method` and the studio's form offer)."""
    return tuple(METHODS)


def register_method(entry: Method) -> None:
    """Add a method (its class comes with it: `methods.register_prompt_method`); refuses a name or PEFT type that
    another method has."""
    taken = [m.name for m in METHODS.values() if entry.name != m.name and entry.peft_type == m.peft_type]
    if not entry.name.isidentifier() or entry.name in METHODS or taken:
        raise ValueError(f"cannot register method {entry.name!r} ({entry.peft_type}): the name or type is taken")
    _REGISTERED[entry.name] = entry


def unregister_method(name: str) -> None:
    """Remove a registered method (a plugin unloaded, a test done); the built-in ones stay."""
    if name in {m.name for m in _METHODS}:
        raise ValueError(f"method {name!r} is built in")
    _REGISTERED.pop(name, None)


def default_method(*, seq2seq: bool = False) -> str:
    """The method a run gets when the user names none: DEFAULT_METHOD, or on an encoder-decoder the first that
    runs there."""
    if not seq2seq or not METHODS[DEFAULT_METHOD].decoder_only:
        return DEFAULT_METHOD
    return next(m.name for m in METHODS.values() if not m.decoder_only)


def method(name: str) -> Method:
    """The method called `name` (KeyError for an unknown one: callers word the error for their front end)."""
    return METHODS[name]


def recipe_lr(method_name: str, reparam: str) -> float:
    """The method's measured AdamW LR for that reparameterisation."""
    return METHODS[method_name].recipe.lr[reparam]


def describe(name: str) -> str:
    """The recipe in one line, for help texts, `info` and reports."""
    r = METHODS[name].recipe
    lrs = ", ".join(f"{lr:g}" + ("" if rp == "none" else f" ({rp})") for rp, lr in r.lr.items())
    return f"{name}: T={r.num_virtual_tokens}, {r.optimizer} LR {lrs}"
