"""Full fine-tuning and LoRA (through PEFT): one small classification loop for both.

The loss is the one prompt tuning trains on: cross-entropy over the label
words' logits at the answer position (`ClassifyTask.loss` with no prompt). The
batches are the prompt-tuning trainer's own (`train.BatchPlan`, same seed and
length bucketing), so all trained methods see the same examples in the same
order; only what is trained differs. AdamW with linear warmup then linear decay
and gradient clipping at 1.0. The model stays in eval mode (no dropout), like
the frozen model under prompt tuning.

Both train a deep copy of the base model, so the caller's model is untouched
and the other methods (and the "before" forgetting figures) use the original.
Given a `LoopCheckpoint`, the loop saves its whole state (trained weights,
optimiser, schedule, data position, figures so far) every few steps in
checkpoint.py's format and, started again on the same folder, resumes from it
with the result an uninterrupted run would have had.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import torch

from ..checkpoint import (
    Checkpoint,
    has_checkpoint,
    load_checkpoint,
    optimization_state,
    restore_optimization,
    save_checkpoint,
)
from ..errors import SoftPromptError
from ..evaluate import EvalSet, evaluate
from ..fileio import write_dir_atomic
from ..models import BaseModel
from ..optim import build_optimizer, build_scheduler
from ..progress import Progress
from ..tasks import ClassifyTask, Encoded
from ..train import BatchPlan
from .config import CompareConfig, full_finetune_refusal
from .measure import parameter_counts, train_and_score, training_state_bytes
from .result import MethodResult
from .task_data import TaskData

LORA_FILES = ("adapter_config.json", "adapter_model.safetensors")


@dataclass
class LoopConfig:
    steps: int
    batch_size: int
    lr: float
    warmup_steps: int = 0
    seed: int = 0
    max_grad_norm: float = 1.0
    bucket_batches: int = 50  # as train.TrainConfig, so the batches match prompt tuning's

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1:
            raise SoftPromptError(f"steps and batch size must be at least 1, got {self.steps} and {self.batch_size}")


@dataclass
class LoopResult:
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    examples_seen: int = 0
    state_bytes: int = 0


class Stateful(Protocol):
    """State a caller keeps across the loop's steps (e.g. the best weights on dev), saved in its checkpoints."""

    def state(self) -> tuple[dict[str, torch.Tensor], dict]: ...

    def load_state(self, tensors: dict[str, torch.Tensor], values: dict) -> None: ...


@dataclass
class LoopCheckpoint:
    """Save the loop's state into `folder` every `every` steps (after `on_step`); resume from it if it is there."""

    folder: Path
    every: int
    extra: Stateful | None = None  # saved and restored with the loop's own state

    def __post_init__(self):
        if self.every < 1:
            raise SoftPromptError(f"checkpoint every {self.every} steps: give at least 1")


def train_classifier(
    model: BaseModel,
    task: ClassifyTask,
    rows: Sequence[Encoded],
    loop: LoopConfig,
    *,
    desc: str = "train",
    show_progress: bool = True,
    on_step: Callable[[int], None] | None = None,
    checkpoint: LoopCheckpoint | None = None,
) -> LoopResult:
    """Train the parameters of `model.model` that require grad; the others stay as they are.

    `on_step(step)` runs after each optimiser step, outside the timed part (e.g. a dev evaluation).
    """
    named = [(n, p) for n, p in model.model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    if not params:
        raise SoftPromptError("nothing to train: no parameter requires grad")
    plan = BatchPlan([len(r) for r in rows], loop.batch_size, seed=loop.seed, bucket_batches=loop.bucket_batches)
    optimizer = build_optimizer(params, "adamw", loop.lr)
    scheduler = build_scheduler(optimizer, warmup_steps=loop.warmup_steps, total_steps=loop.steps, schedule="linear")
    result, position, start = LoopResult(), (0, 0), 0
    state = _LoopState(loop, named, optimizer, scheduler, result)
    if checkpoint is not None and has_checkpoint(checkpoint.folder):
        start, position = state.restore(checkpoint)
    progress = Progress(loop.steps, start, enabled=show_progress, desc=desc)
    try:
        for step in range(start, loop.steps):
            tick = time.perf_counter()
            index, position = plan.take(position)
            batch, target = task.collate(model, [rows[i] for i in index], side="left")
            loss = task.loss(model, None, batch, target)
            if not math.isfinite(loss.item()):
                raise SoftPromptError(
                    f"{desc}: the loss became {loss.item()} at step {step + 1}; try a lower learning rate"
                )
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, loop.max_grad_norm)
            optimizer.step()
            scheduler.step()
            if step == 0:  # optimiser state exists from the first step on
                result.state_bytes = training_state_bytes(params, optimizer)
            optimizer.zero_grad(set_to_none=True)
            result.seconds += time.perf_counter() - tick
            result.examples_seen += len(index)
            result.losses.append(loss.item())
            progress.update(loss=f"{loss.item():.4f}", **{"ex/s": f"{result.examples_seen / result.seconds:.1f}"})
            if on_step is not None:
                on_step(step + 1)
            if checkpoint is not None and (step + 1) % checkpoint.every == 0 and step + 1 < loop.steps:
                state.save(checkpoint, step + 1, position)
    finally:
        progress.close()
    return result


@dataclass
class _LoopState:
    """Everything a classifier-loop checkpoint saves and restores (checkpoint.py's format: no pickle)."""

    loop: LoopConfig
    named: list[tuple[str, torch.nn.Parameter]]  # the trained parameters
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    result: LoopResult

    def save(self, checkpoint: LoopCheckpoint, step: int, position: tuple[int, int]) -> None:
        optim_tensors, optim_values = optimization_state(self.optimizer, self.scheduler)
        extra_tensors, extra_values = checkpoint.extra.state() if checkpoint.extra is not None else ({}, {})
        tensors = {
            **{f"param.{name}": p for name, p in self.named},
            **optim_tensors,
            **{f"extra.{name}": t for name, t in extra_tensors.items()},
        }
        values = {
            "loop": asdict(self.loop),
            "step": step,
            "position": list(position),
            "result": asdict(self.result),
            **optim_values,
            "extra": extra_values,
        }
        save_checkpoint(checkpoint.folder, Checkpoint(tensors, values))

    def restore(self, checkpoint: LoopCheckpoint) -> tuple[int, tuple[int, int]]:
        """Load the folder's state into the weights, optimiser, schedule and result; returns (step, position)."""
        saved = load_checkpoint(checkpoint.folder)
        values, tensors = saved.values, saved.tensors
        if values.get("loop") != asdict(self.loop):
            raise SoftPromptError(
                f"{checkpoint.folder}: the checkpoint is of a run with other settings ({values.get('loop')}, "
                f"now {asdict(self.loop)}); delete the folder to start again"
            )
        missing = [name for name, _ in self.named if f"param.{name}" not in tensors]
        if missing:
            raise SoftPromptError(
                f"{checkpoint.folder}: the checkpoint lacks trained weights {missing[:3]}; "
                "delete the folder to start again"
            )
        with torch.no_grad():
            for name, p in self.named:
                p.copy_(tensors[f"param.{name}"])
        restore_optimization(self.optimizer, self.scheduler, saved)
        for key, value in values["result"].items():
            setattr(self.result, key, value)
        if checkpoint.extra is not None:
            extra = {k[len("extra.") :]: t for k, t in tensors.items() if k.startswith("extra.")}
            checkpoint.extra.load_state(extra, values["extra"])
        return values["step"], tuple(values["position"])


def full_finetune_copy(base: BaseModel) -> BaseModel:
    """A copy of the base model with every weight trainable."""
    if base.quantization.enabled:
        raise SoftPromptError(full_finetune_refusal(base.quantization.mode))
    model = copy.deepcopy(base.model)
    for p in model.parameters():
        p.requires_grad_(True)
    return BaseModel(model=model, tokenizer=base.tokenizer, name=f"{base.name} (fine-tuned)")


def lora_copy(base: BaseModel, r: int, alpha: int, seed: int | None = None):
    """(BaseModel over a LoRA-wrapped copy, the PeftModel or QLoRA adapter); PEFT picks the target modules.

    `seed` fixes the adapters' random init (PEFT draws it from torch's global generator, which is
    left as it was), so a run's seed decides its init as it decides its batches. On a quantised base
    the adapters are qlora.py's (QLoRA: the same targets, init and files; PEFT cannot wrap those layers).
    """
    if base.quantization.enabled:
        from .qlora import qlora_copy

        return qlora_copy(base, r, alpha, seed)
    from peft import LoraConfig, TaskType, get_peft_model

    task_type = TaskType.SEQ_2_SEQ_LM if base.is_seq2seq else TaskType.CAUSAL_LM
    config = LoraConfig(task_type=task_type, r=r, lora_alpha=alpha, lora_dropout=0.0)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        peft_model = get_peft_model(copy.deepcopy(base.model), config)
    # The wrapped model keeps its class (LoRA layers are injected in place), so the task's
    # forward pass (decoder body + restricted head) runs through the adapters unchanged.
    inner = peft_model.get_base_model()
    return BaseModel(model=inner, tokenizer=base.tokenizer, name=f"{base.name} + LoRA"), peft_model


def save_lora(peft_model, folder: str | Path) -> int:
    """Write the adapter (PEFT's format) atomically; returns the bytes of its two files."""
    folder = Path(folder)
    write_dir_atomic(folder, lambda tmp: peft_model.save_pretrained(str(tmp)))
    return sum((folder / name).stat().st_size for name in LORA_FILES)


def save_full_model(model: BaseModel, folder: str | Path) -> int:
    """Write every weight (safetensors) and the config atomically; returns the bytes of those files."""
    folder = Path(folder)
    write_dir_atomic(folder, lambda tmp: model.model.save_pretrained(str(tmp)))
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def run_finetune(
    method: str,
    base: BaseModel,
    data: TaskData,
    train_rows: Sequence[Encoded],
    test_rows: EvalSet,
    config: CompareConfig,
    folder: str | Path,
    *,
    show_progress: bool = True,
    log=print,
) -> tuple[MethodResult, BaseModel]:
    """Train `method` ("lora" or "full-finetune") on a copy; returns (MethodResult, the trained BaseModel)."""
    folder = Path(folder)
    if method == "lora":
        model, peft_model = lora_copy(base, config.lora_r, config.lora_alpha, config.seed)
        lr = config.lora_lr
    else:
        model, peft_model = full_finetune_copy(base), None
        lr = config.full_lr
    trainable, total = parameter_counts(model.model)
    loop = LoopConfig(config.steps, config.batch_size, lr, config.warmup_steps, config.seed)
    log(f"{method}: {config.steps} steps of {config.batch_size}, {trainable:,} trainable parameters, AdamW lr {lr}")
    trained, scored = train_and_score(
        base.device,
        lambda: train_classifier(model, data.task, train_rows, loop, desc=method, show_progress=show_progress),
        lambda _: evaluate(
            model, data.task, None, test_rows.rows, batch_size=config.eval_batch_size, keep_predictions=True
        ),
    )
    if peft_model is not None:
        storage_bytes = save_lora(peft_model, folder)
        storage = "adapter folder: " + " + ".join(LORA_FILES)
    else:
        log(f"{method}: saving all weights to measure their size")
        storage_bytes = save_full_model(model, folder / "model")
        storage = "all weights: model.safetensors + config files"
    result = MethodResult.scored(
        method,
        config,
        scored,
        trainable_parameters=trainable,
        total_parameters=total,
        storage_bytes=storage_bytes,
        storage=storage,
        train_seconds=trained.seconds,
        steps=len(trained.losses),
        examples_seen=trained.examples_seen,
        training_state_bytes=trained.state_bytes,
        interpretability="changes spread over weight matrices: not readable",
        details={"losses": trained.losses, "optimizer": "adamw", "lr": lr, "warmup_steps": loop.warmup_steps}
        | ({"lora_r": config.lora_r, "lora_alpha": config.lora_alpha} if method == "lora" else {}),
    )
    return result, model
