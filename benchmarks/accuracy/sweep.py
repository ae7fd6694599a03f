"""Run a sweep: every (task, method, budget, seed) cell, each saved as it finishes, so a rerun resumes.

A budget is a number of optimiser steps ("50"), or a wall-clock budget
("time:lora:50"): the training time the reference method (lora) needs for 50 steps
on that task, given to every method as the steps it fits into that time at its own
examples/s, both rates measured interleaved on the task (rates.py). Fixed-step
budgets run first; a wall-clock cell whose steps equal a finished fixed-step
cell's reuses it (the reference's always does).

A cell is `OUT/cells/<task>/<method>/<budget>-seed<k>.json`; it is reused only when
it was measured under the same settings (`SweepConfig.fingerprint`, with the
best-weights rule; the method's name with its overrides; the steps). While it
trains, its method checkpoints into `<budget>-seed<k>.work/` every
`checkpoint_every` steps; a run killed mid-cell
resumes there (with the figures an uninterrupted run gives), and the folder goes
once the cell is saved.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from softprompt.balance import stored_bias
from softprompt.checkpoint import has_checkpoint
from softprompt.data import builtin_dataset
from softprompt.errors import SoftPromptError
from softprompt.evaluate import SELECTION_RULE, EvalSet, encode_eval_set, evaluate
from softprompt.fileio import write_json_atomic
from softprompt.models import BaseModel
from softprompt.signals import handling
from softprompt.tasks import Task, task_class
from softprompt.train import CHECKPOINT_DIR, encode_examples

from .methods import Budget, method_by_name, scratch_dir
from .rates import load_rates, measure_rates, rates_path, rates_setting
from .scoring import classification_scores, label_scores
from .variants import parse_variant, variant_splits

CELLS_DIR = "cells"
_TIME_BUDGET = re.compile(r"^time:([a-z0-9-]+):(\d+)$")


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class SweepConfig:
    model: str = "smollm2-135m"
    tasks: tuple[str, ...] = ("rotten-tomatoes", "bbc-news", "sms-spam", "trec", "word-analogies")
    methods: tuple[str, ...] = ("prompt-tuning", "lora")
    seeds: tuple[int, ...] = (0, 1, 2)
    budgets: tuple[str, ...] = ("50",)  # steps, or "time:<method>:<steps>"
    batch_size: int = 16
    evals: int = 5  # dev evaluations per run (every steps/evals steps, and at the end)
    dev_examples: int = 200  # first N of the dev split: the curve, best-weights choice and dev_bias fit
    test_examples: int = 0  # 0: the whole test split
    eval_batch_size: int = 32
    checkpoint_every: int = 10  # steps between a cell's checkpoints (it resumes from them); not in the figures

    def __post_init__(self):
        for name in ("tasks", "methods", "seeds", "budgets"):
            setattr(self, name, tuple(getattr(self, name)))
            if not getattr(self, name):
                raise SoftPromptError(f"--{name}: give at least one")
        for task in self.tasks:
            builtin_dataset(parse_variant(task)[0])  # refuses unknown names, listing the built-ins
        for spec in self.methods:
            method_by_name(spec)
        for budget in self.budgets:
            parse_budget(budget)
        for name in ("batch_size", "evals", "dev_examples", "eval_batch_size", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise SoftPromptError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.test_examples < 0:
            raise SoftPromptError(f"--test-examples must be >= 0, got {self.test_examples}")

    def fingerprint(self) -> dict:
        """Settings a cell's figures depend on (not which tasks, methods, seeds or budgets are swept).

        With the rule that picks the best weights on dev, which is not a setting but a change of it
        changes what a cell measures.
        """
        raw = asdict(self)
        for key in ("tasks", "methods", "seeds", "budgets", "checkpoint_every"):
            raw.pop(key)
        return {**raw, "selection": SELECTION_RULE}


def parse_budget(spec: str) -> tuple[str, int]:
    """'50' -> ('steps', 50); 'time:lora:50' -> ('time:lora', 50)."""
    if spec.isdigit() and int(spec) > 0:
        return "steps", int(spec)
    match = _TIME_BUDGET.match(spec)
    if match and int(match.group(2)) > 0:
        method_by_name(match.group(1))
        return f"time:{match.group(1)}", int(match.group(2))
    raise SoftPromptError(
        f"budget {spec!r}: give optimiser steps (e.g. 50) or time:<method>:<steps> (e.g. time:lora:50)"
    )


def cell_path(out: Path, task: str, method: str, budget: str, seed: int) -> Path:
    safe = re.sub(r"[^A-Za-z0-9.=_-]+", "_", method)
    return out / CELLS_DIR / task / safe / f"{budget.replace(':', '-')}-seed{seed}.json"


@dataclass
class TaskData:
    name: str
    task: Task
    train_rows: list
    train_labels: list[str]
    dev: EvalSet
    test: EvalSet
    max_input_tokens: int | None
    kind: str = field(default="classify")


def load_task(base: BaseModel, name: str, config: SweepConfig) -> TaskData:
    dataset = builtin_dataset(parse_variant(name)[0])
    splits = variant_splits(name)  # a built-in task, or it with one class made rare (variants.py)
    task = task_class(dataset.task).build(dataset.template, labels=dict(dataset.verbalizer) or None)
    limit = dataset.max_input_tokens
    rows, _ = encode_examples(base, task, splits.train, max_tokens=limit)
    test = splits.test[: config.test_examples] if config.test_examples else splits.test
    return TaskData(
        name=name,
        task=task,
        train_rows=rows,
        train_labels=[e.output for e in splits.train],
        dev=encode_eval_set(base, task, splits.dev[: config.dev_examples], max_tokens=limit),
        test=encode_eval_set(base, task, test, max_tokens=limit),
        max_input_tokens=limit,
        kind=dataset.task,
    )


def cell_workdir(path: Path, config: SweepConfig, method: str, steps: int) -> Path:
    """The folder the cell at `path` trains in, kept until the cell is saved so a killed run resumes there.

    A folder left by the same cell under other settings (another fingerprint or steps) is emptied first.
    """
    workdir = path.with_suffix(".work")
    identity = {"config": config.fingerprint(), "method": method, "steps": steps}
    marker = workdir / "cell.json"
    try:
        same = json.loads(marker.read_text(encoding="utf-8")) == identity
    except (OSError, json.JSONDecodeError):
        same = False
    if not same:
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        write_json_atomic(marker, identity)
    return workdir


def run_cell(
    base: BaseModel,
    data: TaskData,
    method_spec: str,
    budget: str,
    steps: int,
    seed: int,
    config: SweepConfig,
    workdir: Path | None = None,
):
    """Train one method for `steps` and score it on the whole test split; returns the cell's figures.

    `workdir`: where the method trains and checkpoints (`cell_workdir`), resuming what is there;
    None: a temporary folder, nothing to resume.
    """
    method = method_by_name(method_spec)
    plan = Budget(
        steps=steps,
        batch_size=config.batch_size,
        eval_every=max(1, steps // config.evals),
        seed=seed,
        max_input_tokens=data.max_input_tokens,
        eval_batch_size=config.eval_batch_size,
        checkpoint_every=config.checkpoint_every if workdir is not None else 0,
    )
    load_before = os.getloadavg()[0]
    with contextlib.nullcontext(workdir) if workdir is not None else scratch_dir() as work:
        trained = method.train(base, data.task, data.train_rows, data.dev, plan, Path(work))
    started = time.perf_counter()
    cell = {
        "task": data.name,
        "method": method_spec,
        "title": method.title,
        "budget": budget,
        "steps": steps,
        "seed": seed,
        "batch_size": config.batch_size,
        "trainable_parameters": trained.trainable_parameters,
        "train_seconds": round(trained.train_seconds, 2),
        "examples_seen": trained.examples_seen,
        "examples_per_s": trained.examples_seen / trained.train_seconds if trained.train_seconds else None,
        "best_step": trained.best_step,
        "curve": trained.curve,
        "losses": [round(x, 5) for x in trained.losses],
        "config": config.fingerprint(),
    }
    if data.task.labels:  # a closed label set: every decision rule on the labels' scores
        labels = data.task.labels
        test_scores = label_scores(
            trained.model, data.task, trained.prompt, data.test.rows, batch_size=plan.eval_batch_size
        )
        dev_scores = label_scores(
            trained.model, data.task, trained.prompt, data.dev.rows, batch_size=plan.eval_batch_size
        )
        rules = classification_scores(
            test_scores,
            [r.gold for r in data.test.rows],
            dev_scores,
            [r.gold for r in data.dev.rows],
            data.train_labels,
            labels,
            decision=stored_bias(data.task, meta.training) if (meta := getattr(trained.prompt, "meta", None)) else None,
        )
        cell["test"] = rules.pop("decision")  # what the product answers (the prompt's decision rule, if any)
        cell["test_rules"] = rules
        cell["test_scores"] = [[round(x, 4) for x in row] for row in test_scores.tolist()]
        cell["dev_scores"] = [[round(x, 4) for x in row] for row in dev_scores.tolist()]  # to study decision rules
    else:
        cell["test"] = evaluate(
            trained.model, data.task, trained.prompt, data.test.rows, batch_size=plan.eval_batch_size
        )
    cell["eval_seconds"] = round(time.perf_counter() - started, 2)
    cell["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    cell["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    return cell


def load_cell(path: Path, config: SweepConfig, method: str, steps: int) -> dict | None:
    if not path.is_file():
        return None
    try:
        cell = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None  # a cell that cannot be read is measured again
    same = cell.get("config") == config.fingerprint() and cell.get("method") == method and cell.get("steps") == steps
    return cell if same else None


def time_budget_steps(
    out: Path, config: SweepConfig, task: str, method: str, budget: str, measure: Callable[[list[str]], dict]
) -> int:
    """Steps `method` fits into the time the budget's reference needs for its steps (rates.py).

    The two methods' examples/s come from OUT/rates/, measured interleaved by `measure([method, reference])`
    the first time they are needed (a process that finds another measuring them waits for its figures).
    """
    kind, ref_steps = parse_budget(budget)
    reference = kind.split(":", 1)[1]
    if method == reference:
        return ref_steps
    path = rates_path(out, task, method, reference)
    setting = rates_setting(config.model, config.batch_size)
    with claim(path, wait=True):
        rates = load_rates(path, setting)
        if rates is None:
            rates = {"setting": setting, **measure([method, reference])}
            write_json_atomic(path, rates)
    rate = rates["examples_per_s"]
    return max(1, round(ref_steps * rate[method] / rate[reference]))


def run_sweep(
    config: SweepConfig,
    out: str | Path,
    base: BaseModel,
    *,
    log: Callable[[str], None] = _stderr,
    between_phases: Callable[[], None] = lambda: None,
) -> list[dict]:
    """Measure every cell not already saved under `out`; returns the cells this call measured or found saved.

    Fixed-step cells of every task first, then `between_phases()`, then the wall-clock cells (their steps
    come from the two methods' examples/s, measured interleaved the first time: rates.py). A cell another
    process is measuring (its claim is locked) is left to it.
    """
    run = _Run(config, Path(out), base, log)
    fixed = [b for b in config.budgets if parse_budget(b)[0] == "steps"]
    timed = [b for b in config.budgets if parse_budget(b)[0] != "steps"]
    tasks = run.tasks()  # kept across both phases, so a task's data load once
    cells = [cell for task in tasks for cell in task.measure(fixed)]
    between_phases()
    return cells + [cell for task in tasks for cell in task.measure(timed)]


def plan_sweep(
    config: SweepConfig, out: str | Path, base: BaseModel, *, log: Callable[[str], None] = _stderr
) -> list[dict]:
    """Each cell's steps and whether it is saved, training nothing but the rates wall-clock budgets need.

    What a sweep would cost before it runs, and the steps each method gets at the same wall-clock time.
    """
    run = _Run(config, Path(out), base, log)
    return [cell for task in run.tasks() for cell in task.plan(config.budgets)]


@dataclass(frozen=True)
class _Run:
    """What every cell of one sweep call shares."""

    config: SweepConfig
    out: Path
    base: BaseModel
    log: Callable[[str], None]

    def tasks(self) -> list[_TaskCells]:
        return [_TaskCells(self, name) for name in self.config.tasks]


class _TaskCells:
    """One task's cells; its data load only when a cell (or a rate) has to be measured."""

    def __init__(self, run: _Run, name: str):
        self.run, self.name = run, name
        self._data: TaskData | None = None

    def data(self) -> TaskData:
        if self._data is None:
            self._data = load_task(self.run.base, self.name, self.run.config)
        return self._data

    def cells(self, budgets: Sequence[str]) -> Iterator[tuple[str, str, int, int]]:
        """(budget, method, seed, steps) of every cell, measuring the rates a wall-clock budget needs."""
        config = self.run.config
        for budget in budgets:
            for method in config.methods:
                for seed in config.seeds:
                    kind, steps = parse_budget(budget)
                    if kind != "steps":
                        steps = time_budget_steps(self.run.out, config, self.name, method, budget, self._rates)
                    yield budget, method, seed, steps

    def _rates(self, methods: list[str]) -> dict:
        self.run.log(f"{self.name}: examples/s of {' and '.join(methods)}, interleaved")
        config = self.run.config
        return measure_rates(
            self.run.base, self.data(), methods, batch_size=config.batch_size, eval_batch_size=config.eval_batch_size
        )

    def plan(self, budgets: Sequence[str]) -> list[dict]:
        """Each cell's steps and whether it is saved; trains no cell."""
        plan = []
        for budget, method, seed, steps in self.cells(budgets):
            saved = self._saved(budget, method, seed, steps) is not None
            self.run.log(f"{self._label(budget, method, seed)}: {steps} steps, {'saved' if saved else 'to measure'}")
            plan.append(
                {"task": self.name, "method": method, "budget": budget, "seed": seed, "steps": steps, "saved": saved}
            )
        return plan

    def measure(self, budgets: Sequence[str]) -> list[dict]:
        """The cells saved or measured now; a cell another process holds is left to it."""
        cells = [self._measure_cell(*cell) for cell in self.cells(budgets)]
        return [cell for cell in cells if cell is not None]

    def _label(self, budget: str, method: str, seed: int) -> str:
        return f"{self.name} {method} {budget} seed {seed}"

    def _saved(self, budget: str, method: str, seed: int, steps: int) -> dict | None:
        return _saved(self.run.out, self.run.config, self.name, method, budget, steps, seed)

    def _measure_cell(self, budget: str, method: str, seed: int, steps: int) -> dict | None:
        run, label = self.run, self._label(budget, method, seed)
        path = cell_path(run.out, self.name, method, budget, seed)
        with claim(path) as mine:
            cell = self._saved(budget, method, seed, steps)
            if cell is None and not mine:
                run.log(f"{label}: another process is measuring it")
                return None
            workdir = None
            if cell is None:
                workdir = cell_workdir(path, run.config, method, steps)
                resuming = " (resuming from its checkpoint)" if has_checkpoint(workdir / CHECKPOINT_DIR) else ""
                run.log(f"{label}: {steps} steps{resuming}")
                cell = run_cell(run.base, self.data(), method, budget, steps, seed, run.config, workdir)
            cell["budget"] = budget
            write_json_atomic(path, cell)
            if workdir is not None:
                shutil.rmtree(workdir, ignore_errors=True)
        run.log(_summary(cell))
        return cell


@contextmanager
def claim(path: Path, *, wait: bool = False) -> Iterator[bool]:
    """Lock `path`'s claim file while it is measured: True if this process holds it, False if another does.

    An advisory lock (flock) on `path` with the suffix .lock, released when the process ends however it
    ends, so a killed run leaves no stale claim. `wait`: block until the holder is done instead of
    answering False. Where flock does not exist every claim is granted.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: one process per --out
        yield True
        return
    lock = path.with_suffix(".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True


def run_sweep_parallel(config: SweepConfig, out: str | Path, jobs: int, *, threads: int | None = None) -> None:
    """`jobs` worker processes (each loads the model, `threads` torch threads) share the sweep's cells.

    Each worker walks the same cell list and measures the cells no other worker has claimed; all
    finish the fixed-step cells before any starts on the wall-clock ones. Raises if a worker failed.
    """
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no torch threads inherited
    barrier = context.Barrier(jobs)
    workers = [
        context.Process(target=_worker, args=(config, str(out), threads, barrier, f"[{i + 1}/{jobs}]"))
        for i in range(jobs)
    ]
    for worker in workers:
        worker.start()
    join_or_stop(workers)
    failed = [i + 1 for i, w in enumerate(workers) if w.exitcode != 0]
    if failed:
        raise SoftPromptError(f"sweep worker(s) {failed} failed (see their messages above); rerun to resume")


def join_or_stop(workers: Sequence, *, grace: float = 300.0) -> None:
    """Wait for the worker processes; if this process is stopped, stop them too instead of leaving orphans.

    - Ctrl-C reaches the workers as well (one process group) and they end by themselves (the
      trainer first finishes its step and saves a checkpoint), so they get `grace` seconds for that
      before they are terminated (a second Ctrl-C terminates them at once).
    - SIGTERM (or an error here) terminates them now: each loses the steps since its cell's last
      checkpoint, and its claim goes with it (flock), so a rerun resumes the cell.
    """

    def stop(signum, frame):
        raise SystemExit(128 + signum)  # not KeyboardInterrupt: the workers were not told, nothing to wait for

    try:
        with handling(signal.SIGTERM, stop):
            try:
                for worker in workers:
                    worker.join()
            except KeyboardInterrupt:
                deadline = time.monotonic() + grace
                for worker in workers:
                    worker.join(timeout=max(0.0, deadline - time.monotonic()))
                raise
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
        for worker in workers:
            worker.join()


def _worker(config: SweepConfig, out: str, threads: int | None, barrier, name: str) -> None:
    from softprompt.models import load_base_model
    from softprompt.recipe import set_threads

    def wait() -> None:
        # A worker that failed broke the barrier: go on; wall-clock cells missing their step cells are skipped.
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()

    try:
        set_threads(threads)
        base = load_base_model(config.model)
        run_sweep(config, out, base, log=lambda m: _stderr(f"{name} {m}"), between_phases=wait)
    except BaseException:
        barrier.abort()  # the others must not wait for this one at the barrier
        raise


def _saved(out: Path, config: SweepConfig, task: str, method: str, budget: str, steps: int, seed: int) -> dict | None:
    """The cell as saved, or the fixed-step cell of the same steps a wall-clock budget reuses."""
    path = cell_path(out, task, method, budget, seed)
    return load_cell(path, config, method, steps) or _reuse_fixed(out, config, task, method, steps, seed)


def _reuse_fixed(out: Path, config: SweepConfig, task: str, method: str, steps: int, seed: int) -> dict | None:
    # Saved by this sweep or an earlier one: the same settings and steps are the same measurement.
    cell = load_cell(cell_path(out, task, method, str(steps), seed), config, method, steps)
    return None if cell is None else dict(cell)


def _summary(cell: dict) -> str:
    test = cell["test"]
    figures = " ".join(f"{k} {test[k]:.3f}" for k in ("accuracy", "macro_f1", "exact_match") if k in test)
    return (
        f"{cell['task']} {cell['method']} {cell['budget']} seed {cell['seed']}: {figures}; "
        f"{cell['steps']} steps, best at {cell['best_step']}, {cell['train_seconds']:.0f} s training"
    )


def all_cells(out: str | Path) -> Sequence[dict]:
    """Every saved cell under `out` (for the table of a sweep run in parts)."""
    paths = sorted((Path(out) / CELLS_DIR).glob("*/*/*.json"))
    return [json.loads(p.read_text(encoding="utf-8")) for p in paths]
