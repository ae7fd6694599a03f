"""The studio's training queue: one job at a time, in order, on a background thread.

Every job is a folder `jobs/<id>/` in the data folder: `job.json` (the spec
and its state, rewritten atomically on every change) and `run/` (the
trainer's output: metrics.jsonl, checkpoint/, the prompt files). So the
queue survives a restart: finished jobs stay finished (their prompts were
published to prompts/<name>), queued jobs queue again, and a job that was
running when the server died is reported as `interrupted`, resumable from
its last checkpoint.

States: queued -> running -> finished | stopped | failed; queued -> cancelled;
running -> interrupted (found after a restart). `stopped` and `interrupted`
jobs with a checkpoint can be resumed (queued again, continuing where they
were). A stopped job still publishes its best prompt so far.

The queue is bounded: at most `max_active` jobs queued or running, at most
`max_kept` job folders in all (`delete` removes a finished one).

The training itself is a callable (`runner`), so the queue's logic is tested
without a model; the studio passes `runner.train_job` with the base model.
"""

from __future__ import annotations

import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import SoftPromptError
from ..fileio import write_json_atomic
from ..progress import MetricsLog
from ..train import CHECKPOINT_DIR, METRICS_FILE
from .runner import JobSpec, load_json

JOB_FILE = "job.json"
RUN_DIR = "run"
RESUMABLE = ("stopped", "interrupted")
DONE = ("finished", "stopped", "failed", "cancelled", "interrupted")
SAVE_EVERY_S = 1.0  # job.json is rewritten at most this often while steps tick
DEFAULT_MAX_ACTIVE = 10  # jobs queued or running
DEFAULT_MAX_KEPT = 200  # job folders kept (each holds a checkpoint and the metrics)

# runner(spec, out, resume=, should_stop=, on_step=, on_start=) -> result figures
Runner = Callable[..., dict]


@dataclass
class Job:
    id: str
    spec: dict
    state: str = "queued"
    created: float = field(default_factory=time.time)
    started: float | None = None
    ended: float | None = None
    step: int = 0
    total_steps: int | None = None
    metric: str | None = None  # the dev metric, e.g. "accuracy"
    result: dict = field(default_factory=dict)
    error: str | None = None
    resume: bool = False  # the next run continues from the checkpoint
    published: str | None = None  # prompt name once its files are in prompts/

    @property
    def name(self) -> str:
        return self.spec["name"]

    def to_dict(self) -> dict:
        return asdict(self)


class QueueFull(SoftPromptError):
    """Too many jobs queued, or too many kept: the message says which and what to do."""

    status = 429


class JobBusy(SoftPromptError):
    """The job (or its prompt name) is in use by a queued or running job."""

    status = 409


class JobQueue:
    """Training jobs under `folder`; `runner` trains one, `publish(job, run_dir)` makes its prompt servable."""

    def __init__(
        self,
        folder: str | Path,
        runner: Runner,
        publish: Callable[[Job, Path], None],
        *,
        max_active: int = DEFAULT_MAX_ACTIVE,
        max_kept: int = DEFAULT_MAX_KEPT,
    ):
        if max_active < 1 or max_kept < 1:
            raise SoftPromptError(f"job limits must be at least 1, got {max_active} and {max_kept}")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.runner, self.publish = runner, publish
        self.max_active, self.max_kept = max_active, max_kept
        self._lock = threading.Condition()
        self._jobs: dict[str, Job] = {}
        self._stop_current = threading.Event()
        self._closing = False
        self._current: str | None = None
        self._last_save = 0.0
        self._load()
        self._thread = threading.Thread(target=self._work, name="softprompt-studio-jobs", daemon=True)
        self._thread.start()

    # -- public -------------------------------------------------------------------

    def submit(self, spec: JobSpec) -> Job:
        with self._lock:
            busy = [j for j in self._jobs.values() if j.name == spec.name and j.state in ("queued", "running")]
            if busy:
                raise JobBusy(f"job {busy[0].id} is already training a prompt named '{spec.name}'")
            self._check_room()
            job = Job(id=_new_id(), spec=spec.to_dict())
            self._jobs[job.id] = job
            self._save(job)
            self._lock.notify_all()
            return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise SoftPromptError(f"no job {job_id[:40]!r}")
        return job

    def list(self) -> list[Job]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.created, reverse=True)

    def stop(self, job_id: str) -> Job:
        """Stop a running job after its current step (it keeps a checkpoint), or cancel a queued one."""
        with self._lock:
            job = self.get(job_id)
            if job.state == "queued":
                job.state, job.ended = "cancelled", time.time()
                self._save(job)
            elif job.state == "running":
                self._stop_current.set()
            else:
                raise SoftPromptError(f"job {job_id} is {job.state}; only queued or running jobs can be stopped")
            return job

    def resume(self, job_id: str) -> Job:
        with self._lock:
            job = self.get(job_id)
            if job.state not in RESUMABLE:
                raise SoftPromptError(f"job {job_id} is {job.state}; only stopped or interrupted jobs can be resumed")
            if not self.resumable(job):
                raise SoftPromptError(f"job {job_id} stopped before its first checkpoint; start a new job instead")
            active = sum(j.state in ("queued", "running") for j in self._jobs.values())
            if active >= self.max_active:
                raise QueueFull(f"{active} jobs are queued or running (the limit is {self.max_active}); resume later")
            job.state, job.resume, job.error, job.ended = "queued", True, None, None
            self._save(job)
            self._lock.notify_all()
            return job

    def delete(self, job_id: str) -> None:
        """Remove a finished (stopped, failed, ...) job's folder; its published prompt stays."""
        with self._lock:
            job = self.get(job_id)
            if job.state in ("queued", "running") or self._current == job_id:
                raise JobBusy(f"job {job_id} is {job.state}; stop it before deleting it")
            del self._jobs[job_id]
            shutil.rmtree(self.folder / job_id, ignore_errors=True)
            self._lock.notify_all()

    def _check_room(self) -> None:
        active = sum(j.state in ("queued", "running") for j in self._jobs.values())
        if active >= self.max_active:
            raise QueueFull(
                f"{active} jobs are queued or running (the limit is {self.max_active}); "
                "wait for one to finish or stop one"
            )
        if len(self._jobs) >= self.max_kept:
            raise QueueFull(
                f"{len(self._jobs)} jobs are kept (the limit is {self.max_kept}); delete finished jobs you no longer need"
            )

    def resumable(self, job: Job) -> bool:
        return job.state in RESUMABLE and (self.run_dir(job.id) / CHECKPOINT_DIR).is_dir()

    def run_dir(self, job_id: str) -> Path:
        return self.folder / job_id / RUN_DIR

    def metrics(self, job_id: str) -> list[dict]:
        return MetricsLog(self.run_dir(self.get(job_id).id) / METRICS_FILE).records()

    def wait(self, job_id: str, timeout: float) -> Job:
        """Block until the job is done (tests and scripts)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._jobs[job_id].state not in DONE or self._current == job_id:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"job {job_id} still {self._jobs[job_id].state}")
                self._lock.wait(left)
            return self._jobs[job_id]

    def close(self, timeout: float = 120.0) -> None:
        """Stop the running job at its next step (checkpoint kept: it will read as stopped) and end the thread."""
        with self._lock:
            self._closing = True
            self._stop_current.set()
            self._lock.notify_all()
        self._thread.join(timeout)

    # -- worker -------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._closing and not self._next():
                    self._lock.wait()
                if self._closing:
                    return
                job = self._next()
                job.state, job.started, job.step = "running", time.time(), job.step if job.resume else 0
                self._current = job.id
                self._stop_current.clear()
                self._save(job)
            self._run(job)

    def _next(self) -> Job | None:
        queued = [j for j in self._jobs.values() if j.state == "queued"]
        return min(queued, key=lambda j: j.created) if queued else None

    def _run(self, job: Job) -> None:
        run_dir = self.run_dir(job.id)

        def on_start(total: int, metric: str | None) -> None:
            with self._lock:
                job.total_steps, job.metric = total, metric
                self._save(job)

        def on_step(step: int) -> None:
            with self._lock:
                job.step = step
                if time.monotonic() - self._last_save > SAVE_EVERY_S:
                    self._save(job)

        try:
            result = self.runner(
                JobSpec.from_dict(job.spec),
                run_dir,
                resume=job.resume,
                should_stop=self._stop_current.is_set,
                on_step=on_step,
                on_start=on_start,
            )
            state = "stopped" if result.get("status") == "interrupted" else "finished"
            self.publish(job, run_dir)
            job.published = job.name
            error = None
        except SoftPromptError as e:
            state, result, error = "failed", {}, str(e)
        except Exception as e:  # a bug must not kill the queue: report it on the job
            state, result, error = "failed", {}, f"internal error ({e.__class__.__name__}: {e})"
        with self._lock:
            job.state, job.result, job.error, job.ended, job.resume = state, result, error, time.time(), False
            self._current = None
            self._save(job)
            self._lock.notify_all()

    # -- persistence --------------------------------------------------------------

    def _save(self, job: Job) -> None:
        self._last_save = time.monotonic()
        write_json_atomic(self.folder / job.id / JOB_FILE, job.to_dict())

    def _load(self) -> None:
        known = {f for f in Job.__dataclass_fields__}
        for path in sorted(self.folder.glob(f"*/{JOB_FILE}")):
            raw = load_json(path)
            if not isinstance(raw, dict) or raw.get("id") != path.parent.name:
                continue  # a damaged record is skipped, never trusted
            job = Job(**{k: v for k, v in raw.items() if k in known})
            if job.state == "running":  # the server stopped while it trained
                job.state, job.ended = "interrupted", job.ended or time.time()
                job.error = "the server stopped during training" + (
                    "; resume continues from the last checkpoint" if self.resumable(job) else ""
                )
                self._save(job)
            self._jobs[job.id] = job


def _new_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
