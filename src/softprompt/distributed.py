"""Data-parallel training on PyTorch distributed (torchrun / accelerate launch), gloo on CPU, NCCL on GPUs.

Only the prompt learns and it is tiny (T x d), so data parallelism needs no
DDP wrapper: every rank holds the frozen model (or, with FSDP, a shard of its
transformer blocks), reads the same data and the same batch plan, runs its
contiguous slice of every micro-batch, and one all-reduce per optimiser step
sums the prompt gradient and the loss. Each rank weights its slice's loss by
its share of the micro-batch, so the summed gradient is the one a single
process computes on the whole global batch: the run does not depend on the
number of processes (up to float summation order).

Only rank 0 writes prompts, logs and checkpoints. Dev evaluation is split
across ranks and the predictions are gathered in order, so every rank computes
the same metric and takes the same early-stopping decision. On --resume rank 0
reads the checkpoint and broadcasts it, so nodes need not share a filesystem.

A rank that dies (crash, OOM, killed node) makes the others' next collective
fail (gloo: connection reset; NCCL/any: the process-group timeout) or the
launcher send them SIGTERM; both become a TrainingError naming the step and
the last checkpoint (written atomically, so it is always usable) and how to
resume. Test hook (documented in docs/distributed.md): SOFTPROMPT_TEST_FAIL_AT
="RANK:STEP" makes that rank exit abruptly at the start of that step.

Collectives move tensors and JSON (never pickle): gathered predictions and the
broadcast checkpoint are encoded as UTF-8 JSON bytes in uint8 tensors.
"""

from __future__ import annotations

import atexit
import datetime
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn, TypeVar

import torch

from .checkpoint import Checkpoint, load_checkpoint, read_values
from .errors import SoftPromptError
from .families import transformer_blocks
from .signals import handling

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 600.0
FAIL_HOOK_ENV = "SOFTPROMPT_TEST_FAIL_AT"
_LAUNCHER_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class RankFailure(SoftPromptError):
    """Another rank died, a collective timed out, or the launcher stopped this rank."""


class _Terminated(Exception):
    """Raised from the SIGTERM handler: the launcher stops the survivors when one rank fails."""


@dataclass(frozen=True)
class LaunchEnv:
    """What torchrun / accelerate launch tell each process through environment variables."""

    rank: int
    world_size: int
    local_rank: int

    @classmethod
    def from_environ(cls, environ=None) -> LaunchEnv | None:
        """The launch variables, or None when the process was not started by a launcher (single process)."""
        env = os.environ if environ is None else environ
        if "WORLD_SIZE" not in env:
            return None
        missing = [name for name in _LAUNCHER_VARS if name not in env]
        if missing:
            raise SoftPromptError(
                f"WORLD_SIZE is set but {', '.join(missing)} are not: start distributed runs with "
                "`torchrun --nproc_per_node N -m softprompt train ...` (or accelerate launch), which sets them all"
            )
        try:
            launch = cls(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"]))
        except ValueError as e:
            raise SoftPromptError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers ({e})") from e
        if not 0 <= launch.rank < launch.world_size:
            raise SoftPromptError(f"RANK={launch.rank} is outside 0..WORLD_SIZE-1={launch.world_size - 1}")
        return launch


@dataclass
class Dist:
    """This process's place in the run; `Dist()` is the single-process run, where every method is a no-op."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None  # gloo | nccl; None = no process group
    fsdp: bool = False  # base model's transformer blocks sharded across ranks (see shard_base_model)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """The rank that writes files and shows progress."""
        return self.rank == 0

    def describe(self) -> str:
        return f"rank {self.rank}/{self.world_size}"

    # -- splitting work ---------------------------------------------------------------

    def shard(self, items: Sequence[T]) -> Sequence[T]:
        """This rank's contiguous slice of `items` (sizes differ by at most one; may be empty)."""
        start, stop = shard_bounds(len(items), self.rank, self.world_size)
        return items[start:stop]

    def gather(self, items: list) -> list:
        """Every rank's JSON-able list, concatenated in rank order (the inverse of `shard`)."""
        if not self.enabled:
            return list(items)
        with self.collective("gathering evaluation results"):
            payload = _to_bytes(items, self.device)
            sizes = [torch.zeros(1, dtype=torch.long, device=self.device) for _ in range(self.world_size)]
            torch.distributed.all_gather(sizes, torch.tensor([payload.numel()], device=self.device))
            longest = int(max(s.item() for s in sizes))
            padded = torch.zeros(longest, dtype=torch.uint8, device=self.device)
            padded[: payload.numel()] = payload
            parts = [torch.empty_like(padded) for _ in range(self.world_size)]
            torch.distributed.all_gather(parts, padded)
        out: list = []
        for part, size in zip(parts, sizes):
            out += _from_bytes(part[: int(size.item())])
        return out

    def shard_loss_terms(self, rows: Sequence, terms: Callable[[object], int]) -> tuple[Sequence, float]:
        """This rank's slice of a micro-batch and its share of the micro-batch's loss terms.

        The task's loss is a mean over loss terms (`terms(row)`, the task's
        `loss_terms`: rows for classification, target tokens for text-to-text), so weighting each slice's mean by its share makes
        the ranks' sum the whole micro-batch's mean. Under FSDP every rank must run
        the same forwards (each one gathers weights), so an empty slice runs one
        row with weight 0.
        """
        if not self.enabled:
            return rows, 1.0
        mine = self.shard(rows)
        if not mine:
            return (rows[:1], 0.0) if self.fsdp else (mine, 0.0)
        return mine, sum(map(terms, mine)) / sum(map(terms, rows))

    def loss_prompt(self, base, prompt):
        """What the task's loss takes for `prompt` (a tensor or anything with a `state`, e.g. reparam.TrainablePrompt):
        the shared prefix cache, or under FSDP a plain prompt inline in every row.

        FSDP frees a block's gathered weights after its backward; the prefix
        cache's keys/values come from a second forward of the same block whose
        backward runs later and would need those freed weights. The inline prompt
        (run in front of every row, same numbers) runs each block once per step.
        A deep prompt's keys/values run no block, so it stays a prefix either way.
        """
        from .forward import prompt_state

        return prompt_state(base, prompt, share_prefix=not self.fsdp)

    def reduce_step(self, params: Sequence[torch.Tensor], loss_sum: float) -> float:
        """Sum the gradients of `params` (the prompt, or its reparam network) and the loss over ranks in one
        all-reduce; return the summed loss."""
        if not self.enabled:
            return loss_sum
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = [g.detach().flatten().to(self.device) for g in grads]
        packed = torch.cat([*flat, torch.tensor([loss_sum], dtype=flat[0].dtype, device=self.device)])
        self.all_reduce_sum_(packed)
        for param, part in zip(params, packed[:-1].split([g.numel() for g in grads])):
            param.grad = part.view_as(param).to(param.device)
        return float(packed[-1])

    # -- collectives ------------------------------------------------------------------

    def all_reduce_sum_(self, tensor: torch.Tensor, what: str = "summing the prompt gradient") -> torch.Tensor:
        if self.enabled:
            with self.collective(what):
                torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
        return tensor

    def any(self, flag: bool) -> bool:
        """True on every rank if it is true on any (keeps stop decisions identical across ranks)."""
        if not self.enabled:
            return flag
        value = torch.tensor([float(flag)], device=self.device)
        return bool(self.all_reduce_sum_(value, "agreeing on a stop request").item() > 0)

    def broadcast_(self, tensor: torch.Tensor, what: str = "broadcasting the prompt") -> torch.Tensor:
        """Rank 0's values into `tensor` on every rank."""
        if self.enabled:
            with self.collective(what):
                moved = tensor.detach().to(self.device)
                torch.distributed.broadcast(moved, src=0)
                with torch.no_grad():
                    tensor.copy_(moved)
        return tensor

    def broadcast_json(self, value=None, what: str = "broadcasting settings"):
        """Rank 0's JSON-able `value` on every rank."""
        if not self.enabled:
            return value
        with self.collective(what):
            payload = _to_bytes(value, self.device) if self.is_main else None
            size = torch.tensor([payload.numel() if payload is not None else 0], device=self.device)
            torch.distributed.broadcast(size, src=0)
            if payload is None:
                payload = torch.empty(int(size.item()), dtype=torch.uint8, device=self.device)
            torch.distributed.broadcast(payload, src=0)
        return _from_bytes(payload)

    def barrier(self, what: str = "waiting for the other ranks") -> None:
        if self.enabled:
            with self.collective(what):
                # A tiny all-reduce rather than dist.barrier(): it honours the timeout on every backend.
                torch.distributed.all_reduce(torch.zeros(1, device=self.device))

    def load_checkpoint(self, folder: str | Path) -> Checkpoint:
        """Rank 0 reads the checkpoint and sends it to the others (no shared filesystem needed).

        A checkpoint rank 0 cannot read raises the same error on every rank.
        """
        if not self.enabled:
            return load_checkpoint(folder)
        header, ckpt = None, None
        if self.is_main:
            try:
                ckpt = load_checkpoint(folder)
                shapes = {k: [list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in ckpt.tensors.items()}
                header = {"values": ckpt.values, "tensors": shapes}
            except SoftPromptError as e:
                header = {"error": str(e)}
        header = self.broadcast_json(header, "sending the checkpoint")
        if "error" in header:
            raise SoftPromptError(header["error"])
        tensors = {}
        for name, (shape, dtype) in header["tensors"].items():
            local = ckpt.tensors[name] if ckpt is not None else torch.empty(shape, dtype=getattr(torch, dtype))
            tensors[name] = self.broadcast_(local.clone(), "sending the checkpoint").cpu()
        return Checkpoint(tensors, header["values"])

    @contextmanager
    def collective(self, what: str) -> Iterator[None]:
        """Turn a dead peer (gloo connection reset, timeout) into a RankFailure that says what was going on."""
        try:
            yield
        except _Terminated:
            raise
        except RuntimeError as e:  # DistBackendError and gloo's errors are RuntimeErrors
            raise RankFailure(
                f"[{self.describe()}] another rank stopped or did not answer while {what} "
                f"({type(e).__name__}: {str(e).splitlines()[0][:300]}); see that rank's own error above"
            ) from e

    def fail_hook(self, step: int) -> None:
        """Test hook: SOFTPROMPT_TEST_FAIL_AT="RANK:STEP" exits this rank abruptly at the start of STEP."""
        spec = os.environ.get(FAIL_HOOK_ENV)
        if not spec:
            return
        rank, _, at = spec.partition(":")
        if int(rank) == self.rank and int(at) == step:
            print(f"{FAIL_HOOK_ENV}: rank {self.rank} exits at step {step} (test hook)", file=sys.stderr, flush=True)
            os._exit(17)


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """[start, stop) of rank's contiguous share of n items; the first n % world_size ranks get one more."""
    per, extra = divmod(n, world_size)
    start = rank * per + min(rank, extra)
    return start, start + per + (rank < extra)


def setup(*, backend: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S, fsdp: bool = False) -> Dist:
    """Join the process group the launcher describes, or return the single-process Dist.

    gloo on CPU, NCCL when CUDA is available (each rank on cuda:LOCAL_RANK).
    `timeout_s` bounds every collective: a rank that hangs stops the run after it.
    """
    launch = LaunchEnv.from_environ()
    if launch is None or launch.world_size == 1:
        if fsdp:
            raise SoftPromptError("--fsdp shards the model across ranks: start the run with torchrun (2+ processes)")
        return Dist()
    if not torch.distributed.is_available():
        raise SoftPromptError("this PyTorch build has no torch.distributed; install a standard PyTorch wheel")
    cuda = torch.cuda.is_available()
    backend = backend or ("nccl" if cuda else "gloo")
    device = torch.device(f"cuda:{launch.local_rank}") if backend == "nccl" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(
            backend=backend,
            rank=launch.rank,
            world_size=launch.world_size,
            timeout=datetime.timedelta(seconds=timeout_s),
        )
    return Dist(launch.rank, launch.world_size, launch.local_rank, device, backend, fsdp)


def teardown(dist: Dist) -> None:
    if dist.enabled and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def exit_process(code: int) -> NoReturn:
    """End a process that ran a process group with `code`, without finalizing the interpreter.

    gloo runs collectives on its own C++ threads; one that drops the last
    reference to a collective's tensor takes the GIL. destroy_process_group
    joins those threads only when the group's last reference goes, and with
    FSDP, DTensor's sharding caches (C++ and thread-local, out of reach) keep
    one for the life of the process. A thread that asks for the GIL while
    Python 3.11 finalizes is ended by pthread_exit inside a C++ destructor:
    std::terminate, "terminate called without an active exception", SIGABRT,
    and a finished run that exits -6 (1 in 10-40 resumed FSDP runs on a loaded
    machine; core files showed ~AsyncAllreduceWork in ProcessGroupGloo::runLoop
    under take_gil while the main thread was in Py_FinalizeEx). So this runs
    the atexit handlers (logging, temporary files) and flushes the standard
    streams while those threads can still finish, then os._exit ends them all.
    """
    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with suppress(Exception):  # a closed or broken stream must not change the exit code
                stream.flush()
        os._exit(code)


@contextmanager
def report_rank_failure(dist: Dist, checkpoint_dir: Path) -> Iterator[None]:
    """A failed collective or the launcher's SIGTERM becomes a RankFailure saying what was kept and how to resume.

    When one rank fails, torchrun SIGTERMs the others; without a handler they
    would vanish without a word.
    """
    if not dist.enabled:
        yield
        return

    def handle(signum, frame):
        _ignore_sigterm()  # a second SIGTERM must not cut short the unwinding or the message
        raise _Terminated

    # SIGTERM is ignored (by `handle`, or by the RankFailure clause) before `handling` removes
    # `handle`, which then leaves it ignored: the default action, a silent exit, never comes back.
    # The outer clause catches a SIGTERM wherever it lands: in the block, in the RankFailure
    # clause before that ignores SIGTERM, or while `handling` exits.
    try:
        with handling(signal.SIGTERM, handle):
            try:
                yield
            except RankFailure as e:
                _ignore_sigterm()
                raise RankFailure(f"{e}. {_kept(checkpoint_dir)}") from e
    except _Terminated:
        raise RankFailure(
            f"[{dist.describe()}] stopped by the launcher (SIGTERM): another rank failed (see its error above) "
            f"or the job was cancelled. {_kept(checkpoint_dir)}"
        ) from None


def _ignore_sigterm() -> None:
    # The run is ending with a message; the launcher's SIGTERM must not cut it off before it is printed.
    with suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _kept(checkpoint_dir: Path) -> str:
    """Where the run can be resumed from (rank 0 wrote the checkpoint atomically, so it is whole)."""
    try:
        step = read_values(checkpoint_dir)["state"]["step"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"No checkpoint was found in {checkpoint_dir} on this node; the run must start again"
    return (
        f"The last checkpoint (step {step}) is in {checkpoint_dir}; "
        "fix the cause and rerun the same command with --resume"
    )


def evaluate_sharded(base, task, prompt, rows: Sequence, *, batch_size: int, dist: Dist) -> dict:
    """`evaluate.evaluate`, with the rows split across ranks and the predictions gathered in order.

    Under FSDP every rank evaluates all rows: each forward gathers weights, so the
    ranks must run the same forwards (and text generation stops at data-dependent steps).
    """
    from .evaluate import evaluate, predict_with_loss, scored_report

    if not dist.enabled or dist.fsdp:
        return evaluate(base, task, prompt, rows, batch_size=batch_size)
    pred, losses = predict_with_loss(base, task, prompt, dist.shard(rows), batch_size=batch_size)
    gathered = dist.gather([[p, loss] for p, loss in zip(pred, losses or [None] * len(pred))])
    gathered_losses = [loss for _, loss in gathered]
    return scored_report(
        task, [p for p, _ in gathered], [r.gold for r in rows], None if None in gathered_losses else gathered_losses
    )


class NullLog:
    """The metrics log on ranks other than 0: they compute the same figures but write nothing."""

    def append(self, record: dict) -> None:
        pass

    def truncate_after(self, step: int) -> None:
        pass


def refuse_quantized_fsdp(mode: str) -> None:
    """FSDP shards float parameters; a quantised model's packed integer weights are not sharded here."""
    if mode != "none":
        raise SoftPromptError(
            f"--fsdp cannot shard a quantised model (--quantize {mode}); under torchrun drop --fsdp (each rank then "
            "holds the whole quantised model, already 4-5x smaller than fp32) or use --quantize none"
        )


def shard_base_model(base, dist: Dist) -> tuple[int, int]:
    """FSDP: shard every transformer block's frozen weights across the ranks (torch FSDP2 `fully_shard`).

    Returns (block parameters held by this rank, block parameters in the model).

    Embeddings and the LM head stay whole on every rank: the restricted head
    reads rows of the LM head directly and the prompt is embedded outside the
    blocks. The blocks are the bulk of a large model, so memory per rank drops
    to ~1/world_size of them plus one gathered block at a time.
    """
    from torch.distributed.fsdp import fully_shard

    refuse_quantized_fsdp(base.quantization.mode)
    blocks = transformer_blocks(base.model)
    if not blocks:
        raise SoftPromptError(f"--fsdp: cannot find the transformer blocks of {type(base.model).__name__}")
    for block in blocks:
        fully_shard(block, reshard_after_forward=True)
    params = [p for block in blocks for p in block.parameters()]
    local = sum(p.to_local().numel() if hasattr(p, "to_local") else p.numel() for p in params)
    return local, sum(p.numel() for p in params)


def _to_bytes(value, device: torch.device) -> torch.Tensor:
    data = bytearray(json.dumps(value).encode("utf-8"))  # never empty: JSON has at least one character
    return torch.frombuffer(data, dtype=torch.uint8).to(device)


def _from_bytes(tensor: torch.Tensor):
    return json.loads(bytes(tensor.cpu().tolist()).decode("utf-8"))
