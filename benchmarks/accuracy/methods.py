"""The methods a sweep compares, one registry entry each, and how one is trained with a dev curve.

Prompt methods go through softprompt's own trainer (`train.train`) with its defaults,
changed only by the entry's `settings` (TrainConfig fields): deep and reparameterised
prompts are entries such as `PromptMethod(..., {"method": "prefix"})`. One default
differs: they train with PROMPT_RECOMPUTE ("off"), keeping every block's activations
as LoRA's loop does, not the trainer's memory-saving "selective" recompute. The two
give the same numbers bit for bit (a result-neutral setting), but "selective" spends
about a tenth more time per step, which a wall-clock budget would charge to the
prompt methods while LoRA keeps all its activations.
LoRA and full fine-tuning reuse `softprompt compare`'s loop and settings (PEFT's LoRA,
AdamW with warmup; compare/finetune.py). Every method sees the same batches for a seed,
is evaluated on the same dev examples every `eval_every` steps, and keeps the weights
that scored best there (the trainer's rule), so all are scored the same way.
With `Budget.checkpoint_every`, each saves a checkpoint into its work folder that
often and, trained again on the same folder, resumes from it (a cell of hours
survives a killed run).

A method name may carry overrides: `prompt-tuning[lr=0.03,init=vocab]` is the prompt
entry with those TrainConfig fields changed; `lora[lr=0.003]` changes LoRA's LR.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Protocol

import torch

from softprompt.errors import SoftPromptError
from softprompt.evaluate import EvalSet, better_on_dev, evaluate
from softprompt.models import BaseModel
from softprompt.progress import MetricsLog
from softprompt.prompts.base import BasePrompt
from softprompt.prompts.registry import VARIANTS
from softprompt.tasks import ClassifyTask, Encoded, Task

# What prompt methods' backward pass keeps in a sweep (TrainConfig.gradient_checkpointing): as much as LoRA's loop.
PROMPT_RECOMPUTE = "off"


@dataclass(frozen=True)
class Budget:
    """What one cell asks of a method."""

    steps: int
    batch_size: int
    eval_every: int
    seed: int
    max_input_tokens: int | None
    eval_batch_size: int = 32
    checkpoint_every: int = 0  # steps between checkpoints in the work folder; 0: none to resume from


@dataclass
class Trained:
    """A trained method, ready to score: `model` with `prompt` (None: the model alone)."""

    model: BaseModel
    prompt: BasePrompt | None  # a prompt of any method (methods.py)
    curve: list[dict]  # one {"step": s, <dev metric>: value, ...} per dev evaluation
    losses: list[float]  # training loss per step
    train_seconds: float  # optimiser steps only, without the dev evaluations
    examples_seen: int
    best_step: int | None
    trainable_parameters: int


class Method(Protocol):
    title: str

    def train(
        self, base: BaseModel, task: Task, rows: Sequence[Encoded], dev: EvalSet, budget: Budget, workdir: Path
    ) -> Trained: ...


def balanced_weights(task: ClassifyTask, rows: Sequence[Encoded]) -> tuple[float, ...]:
    """Inverse label frequency in `rows`, scaled so the weights average 1 over examples (sklearn's 'balanced')."""
    counts = Counter(r.target for r in rows)
    k = len(task.labels)
    return tuple(len(rows) / (k * counts[i]) if counts[i] else 1.0 for i in range(k))


@dataclass(frozen=True)
class PromptMethod:
    """A soft prompt trained by `train.train`; `settings` are TrainConfig fields beside its defaults."""

    title: str
    settings: Mapping[str, object] = field(default_factory=dict)
    balanced_loss: bool = False  # class-balanced cross-entropy (inverse label frequency)

    def train(
        self, base: BaseModel, task: Task, rows: Sequence[Encoded], dev: EvalSet, budget: Budget, workdir: Path
    ) -> Trained:
        from softprompt.checkpoint import has_checkpoint
        from softprompt.train import CHECKPOINT_DIR, TrainConfig, train

        if self.balanced_loss and task.has_labels:
            task = replace(task, class_weights=balanced_weights(task, rows))
        settings = {"init": task.default_init, "gradient_checkpointing": PROMPT_RECOMPUTE, **self.settings}
        config = TrainConfig(
            batch_size=budget.batch_size,
            steps=budget.steps,
            eval_every=budget.eval_every,
            eval_batch_size=budget.eval_batch_size,
            checkpoint_every=budget.checkpoint_every or budget.steps,
            max_input_tokens=budget.max_input_tokens,
            seed=budget.seed,
            **settings,
        )
        resume = budget.checkpoint_every > 0 and has_checkpoint(workdir / CHECKPOINT_DIR)
        result = train(base, task, rows, dev, config, workdir, resume=resume, show_progress=False)
        if result.status == "interrupted":
            raise KeyboardInterrupt
        records = MetricsLog(workdir / "metrics.jsonl").records()
        return Trained(
            model=base,
            prompt=result.prompt,
            curve=[_undev(r) for r in records if any(k.startswith("dev_") for k in r)],
            losses=[r["loss"] for r in records if "loss" in r],
            train_seconds=float(result.prompt.meta.training.get("train_time_s", result.wall_time_s)),
            examples_seen=result.examples_seen,
            best_step=result.best_step,
            trainable_parameters=result.trainable_parameters,  # a reparam network's too, while it trains
        )


def _undev(record: dict) -> dict:
    return {"step": record["step"], **{k[4:]: v for k, v in record.items() if k.startswith("dev_")}}


@dataclass(frozen=True)
class FinetuneMethod:
    """LoRA or full fine-tuning through `softprompt compare`'s loop, with its settings unless overridden."""

    title: str
    kind: str  # "lora" | "full-finetune"
    settings: Mapping[str, object] = field(default_factory=dict)  # lr, lora_r, lora_alpha, warmup_fraction

    def train(
        self, base: BaseModel, task: Task, rows: Sequence[Encoded], dev: EvalSet, budget: Budget, workdir: Path
    ) -> Trained:
        from softprompt.compare.config import CompareConfig
        from softprompt.compare.finetune import (
            LoopCheckpoint,
            LoopConfig,
            full_finetune_copy,
            lora_copy,
            train_classifier,
        )
        from softprompt.compare.measure import parameter_counts
        from softprompt.train import CHECKPOINT_DIR

        defaults = CompareConfig()
        unknown = set(self.settings) - {"lr", "lora_r", "lora_alpha", "warmup_fraction"}
        if unknown:
            raise SoftPromptError(
                f"{self.kind}: unknown settings {sorted(unknown)} (lr, lora_r, lora_alpha, warmup_fraction)"
            )
        option = {**{"lora_r": defaults.lora_r, "lora_alpha": defaults.lora_alpha}, **self.settings}
        if self.kind == "lora":
            model, _ = lora_copy(base, int(option["lora_r"]), int(option["lora_alpha"]), budget.seed)
            lr = float(option.get("lr", defaults.lora_lr))
        else:
            model = full_finetune_copy(base)
            lr = float(option.get("lr", defaults.full_lr))
        warmup = int(budget.steps * float(option.get("warmup_fraction", defaults.warmup_fraction)))
        loop = LoopConfig(budget.steps, budget.batch_size, lr, warmup, budget.seed)
        tracker = _BestOnDev(model, task, dev, budget)
        every = budget.checkpoint_every
        trained = train_classifier(
            model,
            task,
            rows,
            loop,
            desc=self.kind,
            show_progress=False,
            on_step=tracker.on_step(budget.steps),
            checkpoint=LoopCheckpoint(workdir / CHECKPOINT_DIR, every, tracker) if every else None,
        )
        tracker.restore_best()
        return Trained(
            model=model,
            prompt=None,
            curve=tracker.curve,
            losses=trained.losses,
            train_seconds=trained.seconds,
            examples_seen=trained.examples_seen,
            best_step=tracker.best_step,
            trainable_parameters=parameter_counts(model.model)[0],
        )


class _BestOnDev:
    """Dev evaluation every `eval_every` steps and at the end; keeps a copy of the best trained weights."""

    def __init__(self, model: BaseModel, task: Task, dev: EvalSet, budget: Budget):
        self.model, self.task, self.dev, self.budget = model, task, dev, budget
        self.metric = task.metric
        self.curve: list[dict] = []
        self.best_step: int | None = None
        self.best_value: float | None = None
        self.best_loss: float | None = None
        self.best: dict[str, torch.Tensor] = {}

    def on_step(self, total: int):
        def hook(step: int) -> None:
            if step % self.budget.eval_every and step != total:
                return
            report = evaluate(self.model, self.task, None, self.dev.rows, batch_size=self.budget.eval_batch_size)
            self.curve.append({"step": step, **{k: v for k, v in report.items() if isinstance(v, (int, float))}})
            value, loss = report[self.metric], report.get("loss")
            if better_on_dev(value, loss, self.best_value, self.best_loss):  # the trainer's rule
                self.best_value, self.best_loss, self.best_step = value, loss, step
                self.best = {n: p.detach().clone() for n, p in self.trained()}

        return hook

    def trained(self):
        return ((n, p) for n, p in self.model.model.named_parameters() if p.requires_grad)

    def restore_best(self) -> None:
        with torch.no_grad():
            for name, p in self.trained():
                p.copy_(self.best[name])

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        """What a loop checkpoint keeps of this tracker (compare.finetune.Stateful)."""
        values = {"best_step": self.best_step, "best_value": self.best_value, "best_loss": self.best_loss}
        return dict(self.best), {"curve": self.curve, **values}

    def load_state(self, tensors: dict[str, torch.Tensor], values: dict) -> None:
        self.best = {name: t.clone() for name, t in tensors.items()}
        self.curve, self.best_step, self.best_value = values["curve"], values["best_step"], values["best_value"]
        self.best_loss = values.get("best_loss")  # absent in a checkpoint from before the tie-break


# The product's prompt methods (softprompt.prompts.registry.VARIANTS, at their recipes), a few the sweeps measured besides,
# the product's default (what `softprompt train` with no method flag trains) and the baselines.
METHODS: Mapping[str, Method] = MappingProxyType(
    {
        **{
            name: PromptMethod(v.title, {"method": v.method, "reparam": v.reparam, **v.settings})
            for name, v in VARIANTS.items()
        },
        "default": PromptMethod("softprompt train with no method flag"),
        "prompt-tuning-balanced": PromptMethod(
            "Prompt tuning, class-balanced loss", {"method": "prompt"}, balanced_loss=True
        ),
        "prefix-tuning-mlp": PromptMethod(
            "Prefix tuning through an MLP (softprompt)", {"method": "prefix", "reparam": "mlp"}
        ),
        "residual-prompt-tuning": PromptMethod(
            "Residual prompt tuning (softprompt)", {"method": "prompt", "reparam": "residual"}
        ),
        "lora": FinetuneMethod("LoRA r=8 (PEFT)", "lora"),
        "full-finetune": FinetuneMethod("Full fine-tuning", "full-finetune"),
    }
)


def method_by_name(spec: str) -> Method:
    """A registry entry, with `[key=value,...]` overrides of its settings (values read as JSON where they parse)."""
    name, _, rest = spec.partition("[")
    if name not in METHODS:
        raise SoftPromptError(f"no method {name!r}; choose from {', '.join(METHODS)} (optionally with [key=value,...])")
    method = METHODS[name]
    if not rest:
        return method
    if not rest.endswith("]"):
        raise SoftPromptError(f"method {spec!r}: overrides go in brackets, e.g. {name}[lr=0.03]")
    overrides = {}
    for part in filter(None, (p.strip() for p in rest[:-1].split(","))):
        key, eq, value = part.partition("=")
        if not eq:
            raise SoftPromptError(f"method {spec!r}: {part!r} is not key=value")
        overrides[key.strip()] = _value(value.strip())
    return replace(method, title=f"{method.title} [{rest[:-1]}]", settings={**method.settings, **overrides})


def _value(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def scratch_dir(root: Path | None = None) -> tempfile.TemporaryDirectory:
    """Where a prompt method's trainer writes its folder (thrown away: the sweep keeps figures only)."""
    return tempfile.TemporaryDirectory(prefix="sweep-", dir=root)
