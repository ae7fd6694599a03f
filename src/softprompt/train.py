"""The training loop: only the prompt learns; the base model stays frozen and bitwise unchanged.

One optimiser step = `grad_accum` micro-batches of `batch_size` examples. For
each micro-batch the prompt's keys/values are computed once (batch size 1) and
shared by every row (`forward.prompt_state`), only the input tokens run, and
logits are computed only where the loss needs them (`tasks.py`). Encoder-decoder
models take the prompt inline, in front of the encoder input.

Reproducible: the data order of epoch e comes from a torch.Generator seeded by
(seed, e), with length bucketing (shuffle, sort each bucket of
`bucket_batches` batches by length, shuffle the batches), so a run is a pure
function of its config and data. A checkpoint (prompt, optimiser, schedule,
data position, early-stopping state) is written every `checkpoint_every` steps,
on Ctrl-C, and at the end; `resume=True` continues from it and ends with the
same prompt, bit for bit, as a run that never stopped.

The output folder holds the best prompt (by the dev metric, a tie going to the
lower dev loss: `evaluate.SELECTION_RULE`; the last one without dev data) in
PEFT's format, `metrics.jsonl` and `checkpoint/`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from .balance import DECISION_KEY, balanced_task, decision_figures, dev_metric
from .checkpoint import Checkpoint, load_checkpoint, optimization_state, restore_optimization, save_checkpoint
from .data import Example
from .distributed import Dist, NullLog, evaluate_sharded, report_rank_failure
from .errors import SoftPromptError
from .evaluate import EvalSet, better_on_dev, check_rows_fit
from .models import BaseModel
from .optim import build_optimizer, build_scheduler
from .progress import MetricsLog, Progress
from .prompts.base import BasePrompt
from .prompts.meta import PromptMeta
from .prompts.methods import prompt_class
from .prompts.reparam import TrainablePrompt
from .recompute import recompute
from .signals import handling
from .tasks import Encoded, Task
from .train_config import TrainConfig

CHECKPOINT_DIR = "checkpoint"
METRICS_FILE = "metrics.jsonl"
ENCODER_PREFIX = "encoder."  # checkpoint tensors of the module that makes the prompt (reparam.py)


class TrainingError(SoftPromptError):
    """Training cannot go on (e.g. the loss became NaN); the message says what was kept."""


@dataclass
class TrainResult:
    prompt: BasePrompt  # the best prompt (the one saved in the output folder), of the run's method
    status: str  # finished | early_stopped | interrupted
    steps: int
    best_step: int | None
    best_metric: float | None
    metric: str | None
    wall_time_s: float
    examples_seen: int
    out: Path
    trainable_parameters: int = 0  # numbers trained: the prompt's, or its reparam network's (more) while it trains
    training_shapes: tuple[tuple[int, ...], ...] = ()  # the shape of every trained tensor


def encode_examples(
    base: BaseModel, task: Task, examples: Sequence[Example], *, max_tokens: int | None = None, truncate: str = "left"
) -> tuple[list[Encoded], int]:
    """Examples as token ids, and how many inputs were truncated."""
    rows = [
        task.encode(base, ex.input, ex.output, max_tokens=max_tokens, truncate=truncate, where=ex.where)
        for ex in examples
    ]
    return rows, sum(r.truncated for r in rows)


class BatchPlan:
    """Deterministic, length-bucketed batches per epoch; a position is (epoch, batch index)."""

    def __init__(self, lengths: Sequence[int], batch_size: int, *, seed: int, bucket_batches: int):
        if not lengths:
            raise SoftPromptError("no training examples")
        self.lengths, self.batch_size, self.seed, self.bucket = list(lengths), batch_size, seed, bucket_batches
        self._epoch: tuple[int, list[list[int]]] | None = None

    def epoch(self, epoch: int) -> list[list[int]]:
        if self._epoch is None or self._epoch[0] != epoch:
            self._epoch = (epoch, self._make(epoch))
        return self._epoch[1]

    def _make(self, epoch: int) -> list[list[int]]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.lengths), generator=gen).tolist()
        chunk = self.batch_size * self.bucket
        batches: list[list[int]] = []
        for start in range(0, len(order), chunk):
            # Sorting within a bucket keeps padding low while batches stay random across buckets.
            group = sorted(order[start : start + chunk], key=lambda i: self.lengths[i])
            batches += [group[i : i + self.batch_size] for i in range(0, len(group), self.batch_size)]
        shuffle = torch.randperm(len(batches), generator=gen).tolist()
        return [batches[i] for i in shuffle]

    def take(self, position: tuple[int, int]) -> tuple[list[int], tuple[int, int]]:
        """The batch at `position` and the position after it."""
        epoch, index = position
        batches = self.epoch(epoch)
        nxt = (epoch, index + 1) if index + 1 < len(batches) else (epoch + 1, 0)
        return batches[index], nxt


@dataclass
class _State:
    """The loop's counters: everything besides tensors that a checkpoint restores."""

    step: int = 0
    position: tuple[int, int] = (0, 0)
    best_metric: float | None = None
    best_loss: float | None = None  # the best evaluation's dev loss: it breaks a tie of the metric
    best_step: int | None = None
    bad_evals: int = 0
    examples_seen: int = 0
    train_time_s: float = 0.0
    last_dev: dict = field(default_factory=dict)


class _Interrupt:
    """Ctrl-C sets a flag; the loop finishes its step, saves a checkpoint and stops. A second Ctrl-C aborts."""

    def __init__(self, progress: Progress):
        self.requested = False
        self.progress = progress

    def handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.progress.write("interrupted: finishing this step and saving a checkpoint (Ctrl-C again to abort)")


def train(
    base: BaseModel,
    task: Task,
    train_rows: Sequence[Encoded],
    dev: EvalSet | None,
    config: TrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    show_progress: bool = True,
    meta: PromptMeta | None = None,
    on_step: Callable[[int], None] | None = None,
    dist: Dist | None = None,
    should_stop: Callable[[], bool] | None = None,
    allow_model_mismatch: bool = False,
) -> TrainResult:
    """Train a prompt for `task`; write the best prompt, metrics.jsonl and checkpoint/ into `out`.

    `dist` (distributed.setup()) makes this one rank of a data-parallel run: same result, rank 0 writes.
    """
    out = Path(out)
    dist = dist or Dist()
    started = time.perf_counter()
    task = balanced_task(task, train_rows, config.balance)  # loss weights and decision rule (balance.py)
    prefix = config.num_virtual_tokens + len(task.head_ids(base))  # a chat prompt's system turn is in its prefix
    check_rows_fit(base, task, train_rows, prefix)
    if dev is not None:  # here, not at the first dev evaluation minutes into the run
        check_rows_fit(base, task, dev.rows, prefix)
    total = config.total_steps(len(train_rows))
    plan = BatchPlan(
        [len(r) for r in train_rows], config.batch_size, seed=config.seed, bucket_batches=config.bucket_batches
    )
    prompt = _initial_prompt(base, task, config, meta, allow_model_mismatch)
    for param in prompt.parameters():
        dist.broadcast_(param)  # identical start on every rank, whatever the init's randomness
    optimizer = build_optimizer(prompt.parameters(), config.optimizer, config.learning_rate, config.weight_decay)
    scheduler = build_scheduler(
        optimizer, warmup_steps=config.warmup_steps, total_steps=total, schedule=config.schedule
    )
    signature = _data_signature(train_rows, dev)
    log = MetricsLog(out / METRICS_FILE) if dist.is_main else NullLog()
    state = _State()
    best = prompt.fold()
    if resume:
        state, best = _restore(
            out / CHECKPOINT_DIR, base, config, signature, prompt, optimizer, scheduler, load=dist.load_checkpoint
        )
        log.truncate_after(state.step)
    elif dist.is_main and ((out / CHECKPOINT_DIR).exists() or (out / METRICS_FILE).exists()):
        # A fresh run into an old run's folder: start clean rather than mix two runs' logs.
        shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)
        (out / METRICS_FILE).unlink(missing_ok=True)

    metric = dev_metric(task) if dev is not None else None
    progress = Progress(total, state.step, enabled=show_progress and dist.is_main)
    status = "finished"

    def checkpoint() -> None:
        if dist.is_main:
            _save(out / CHECKPOINT_DIR, config, signature, base, state, prompt, best, optimizer, scheduler)

    try:
        interrupt = _Interrupt(progress)
        with handling(signal.SIGINT, interrupt.handle), report_rank_failure(dist, out / CHECKPOINT_DIR):
            while state.step < total:
                tick = time.perf_counter()
                dist.fail_hook(state.step + 1)
                loss, n = _train_step(base, task, train_rows, plan, state, prompt, config, dist)
                if not math.isfinite(loss):
                    raise TrainingError(_nan_message(loss, state.step + 1, out, config))
                grad_norm = _clip(prompt, config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                state.step += 1
                state.examples_seen += n
                spent = time.perf_counter() - tick
                state.train_time_s += spent
                log.append(
                    {
                        "step": state.step,
                        "loss": loss,
                        "lr": optimizer.param_groups[0]["lr"],
                        "grad_norm": grad_norm,
                        "examples_per_s": n / spent,
                        "epoch": state.position[0],
                    }
                )
                progress.update(loss=f"{loss:.4f}", **{"ex/s": f"{state.examples_seen / state.train_time_s:.1f}"})
                if dev is not None and (state.step % config.eval_every == 0 or state.step == total):
                    improved = _dev_eval(base, task, dev, prompt, config, state, log, metric, dist)
                    progress.note(**{f"dev_{metric}": f"{state.last_dev[metric]:.4f}"})
                    if improved:
                        best = prompt.fold()
                        if dist.is_main:
                            figures = _training_figures(config, task, state, metric, "running")
                            _save_prompt(base, prompt, best, out, figures)
                    elif config.patience and state.bad_evals >= config.patience:
                        status = "early_stopped"
                if on_step is not None:
                    on_step(state.step)
                # should_stop: a stop asked from another thread (e.g. the studio), handled like Ctrl-C.
                stop_asked = interrupt.requested or (should_stop is not None and should_stop())
                stop_asked = dist.any(stop_asked)  # a stop on any rank stops every rank after this step
                if status == "early_stopped" or stop_asked:
                    status = "interrupted" if stop_asked else status
                    break
                if state.step % config.checkpoint_every == 0:
                    checkpoint()
            checkpoint()
    finally:
        progress.close()

    if dev is None:
        best = prompt.fold()
    figures = _training_figures(config, task, state, metric, status)
    figures.update(
        train_examples=len(train_rows), total_steps=total, wall_time_s=round(time.perf_counter() - started, 2)
    )
    final = _save_prompt(base, prompt, best, out, figures) if dist.is_main else prompt.artefact(best)
    dist.barrier("finishing")  # when train() returns on any rank, rank 0's files are complete
    return TrainResult(
        prompt=final,
        status=status,
        steps=state.step,
        best_step=state.best_step,
        best_metric=state.best_metric,
        metric=metric,
        wall_time_s=time.perf_counter() - started,
        examples_seen=state.examples_seen,
        out=out,
        trainable_parameters=prompt.num_parameters,
        training_shapes=tuple(tuple(p.shape) for p in prompt.parameters()),
    )


def _initial_prompt(
    base: BaseModel, task: Task, config: TrainConfig, meta: PromptMeta | None, allow_mismatch: bool
) -> TrainablePrompt:
    """The run's method at its init, parameterised as `config.reparam` says."""
    meta = replace(meta or PromptMeta(), **task.meta_fields())
    # The decision rule travels with the prompt from the start: its dev evaluations decide by it too.
    kept = {k: v for k, v in meta.training.items() if k != DECISION_KEY}
    meta = replace(meta, training={**kept, **decision_figures(task)})
    prompt = prompt_class(config.method).initialize(
        base,
        config.num_virtual_tokens,
        config.init,
        label_words=task.init_words(),
        seed=config.seed,
        meta=meta,
        allow_mismatch=allow_mismatch,
    )
    return TrainablePrompt(prompt, config.reparam, hidden=config.reparam_hidden, seed=config.seed)


def _train_step(
    base: BaseModel,
    task: Task,
    rows: Sequence[Encoded],
    plan: BatchPlan,
    state: _State,
    prompt: TrainablePrompt,
    config: TrainConfig,
    dist: Dist | None = None,
) -> tuple[float, int]:
    """Forward + backward over grad_accum micro-batches; returns (mean loss, examples).

    Distributed: this rank runs its slice of each micro-batch, weighted by its share of
    the micro-batch's loss terms, and one all-reduce sums gradients and loss over ranks.
    """
    dist = dist or Dist()
    micro = []
    for _ in range(config.grad_accum):
        index, state.position = plan.take(state.position)
        micro.append([rows[i] for i in index])
    n = sum(len(m) for m in micro)
    total = 0.0
    for batch_rows in micro:
        mine, share = dist.shard_loss_terms(batch_rows, task.loss_terms)
        if not mine:
            continue
        batch, target = task.collate(base, mine, side="left")
        with recompute(base, config.gradient_checkpointing):
            loss = task.loss(base, dist.loss_prompt(base, prompt), batch, target)
        # Weight by rows so accumulated micro-batches give the mean over the whole step.
        (loss * (share * len(batch_rows) / n)).backward()
        total += loss.item() * share * len(batch_rows)
    return dist.reduce_step(prompt.parameters(), total) / n, n


def _clip(prompt: TrainablePrompt, max_norm: float | None) -> float:
    params = [p for p in prompt.parameters() if p.grad is not None]
    if not params:
        return 0.0
    # An infinite max_norm only measures the norm (the same total as the clipping would use).
    return float(torch.nn.utils.clip_grad_norm_(params, max_norm or math.inf))


def _dev_eval(base, task, dev: EvalSet, prompt, config, state: _State, log: MetricsLog, metric: str, dist) -> bool:
    report = evaluate_sharded(base, task, prompt.artefact(), dev.rows, batch_size=config.eval_batch_size, dist=dist)
    state.last_dev = {k: v for k, v in report.items() if isinstance(v, (int, float))}
    log.append({"step": state.step, **{f"dev_{k}": v for k, v in state.last_dev.items()}})
    value, loss = report[metric], report.get("loss")
    if better_on_dev(value, loss, state.best_metric, state.best_loss):
        state.best_metric, state.best_loss, state.best_step, state.bad_evals = value, loss, state.step, 0
        return True
    state.bad_evals += 1
    return False


def _training_figures(config: TrainConfig, task: Task, state: _State, metric: str | None, status: str) -> dict:
    figures = {
        "status": status,
        "steps": state.step,
        "examples_seen": state.examples_seen,
        "train_time_s": round(state.train_time_s, 2),
        "optimizer": config.optimizer,
        "lr": config.learning_rate,
        "batch_size": config.batch_size * config.grad_accum,
        "seed": config.seed,
        "method": config.method,
        "reparam": config.reparam,
        "settings": config.summary(),  # what `info` and the reports show: the recipe's values included
        **decision_figures(task),  # the decision rule every classify path applies (balance.py)
    }
    if metric is not None and state.best_metric is not None:
        figures.update({"best_step": state.best_step, f"dev_{metric}": state.best_metric})
    return figures


def _save_prompt(
    base: BaseModel, prompt: TrainablePrompt, tensor: torch.Tensor, out: Path, figures: dict
) -> BasePrompt:
    """Write `tensor` as the prompt files in `out`, keeping metrics.jsonl and checkpoint/ beside them.

    SoftPrompt.save replaces a whole folder, so the files are written into a
    temporary folder and each one moved into `out` with an atomic rename.
    """
    saved = prompt.artefact(tensor, replace(prompt.meta, training=dict(figures)))
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".prompt-", dir=out))
    try:
        saved.save(tmp / "prompt", base)
        for item in (tmp / "prompt").iterdir():
            os.replace(item, out / item.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return saved


def _data_signature(train_rows: Sequence[Encoded], dev: EvalSet | None) -> str:
    digest = hashlib.blake2b(digest_size=12)
    for r in train_rows:
        digest.update(json.dumps([r.ids, r.target]).encode())
    digest.update(b"|dev|")
    for r in dev.rows if dev is not None else ():
        digest.update(json.dumps([r.ids, r.gold]).encode())
    return digest.hexdigest()


def _save(folder, config, signature, base, state: _State, prompt, best, optimizer, scheduler) -> None:
    optim_tensors, optim_values = optimization_state(optimizer, scheduler)
    values = {
        "config": asdict(config),
        "data_signature": signature,
        "base_fingerprint": base.fingerprint,
        "base_quantization": str(base.quantization),
        "state": {**asdict(state), "position": list(state.position)},
        **optim_values,
    }
    encoder = {f"{ENCODER_PREFIX}{name}": t for name, t in prompt.named_tensors().items()}
    tensors = {"prompt": prompt.fold(), "best_prompt": best, **encoder, **optim_tensors}
    save_checkpoint(folder, Checkpoint(tensors, values))


def _restore(
    folder, base, config, signature, prompt, optimizer, scheduler, load=load_checkpoint
) -> tuple[_State, torch.Tensor]:
    ckpt = load(folder)
    v = ckpt.values
    diffs = config.differences(v.get("config", {}))
    if diffs:
        raise SoftPromptError(f"{folder}: --resume needs the same settings as the interrupted run; " + "; ".join(diffs))
    if v.get("base_fingerprint") != base.fingerprint:
        raise SoftPromptError(f"{folder}: the checkpoint was trained on another base model; use the same --model")
    saved = v.get("base_quantization", "none")  # checkpoints from before quantisation: full precision
    if saved != str(base.quantization):
        # Another precision would give another result than the uninterrupted run.
        raise SoftPromptError(
            f"{folder}: the interrupted run trained on {saved} weights; resume with --quantize {saved}"
        )
    if v.get("data_signature") != signature:
        raise SoftPromptError(
            f"{folder}: the training or dev data differ from the interrupted run's; use the same --data"
        )
    encoder = {k[len(ENCODER_PREFIX) :]: t for k, t in ckpt.tensors.items() if k.startswith(ENCODER_PREFIX)}
    # A checkpoint from before reparameterisation holds the plain weights only, as "prompt".
    prompt.load_tensors(encoder or {"weights": ckpt.tensors["prompt"]})
    restore_optimization(optimizer, scheduler, ckpt)
    raw = dict(v["state"])
    raw["position"] = tuple(raw["position"])
    return _State(**raw), ckpt.tensors["best_prompt"].clone()


def _nan_message(loss: float, step: int, out: Path, config: TrainConfig) -> str:
    kept = out / CHECKPOINT_DIR
    where = f"the last good checkpoint is in {kept}" if kept.exists() else "no checkpoint had been written yet"
    return (
        f"the loss became {loss} at step {step}; training stopped and nothing from this step was kept "
        f"({where}; the best prompt so far is in {out} if a dev evaluation ran). "
        f"Try a lower --lr (now {config.learning_rate}) or --max-grad-norm 1.0"
    )
