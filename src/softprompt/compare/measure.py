"""What each method costs: parameters, bytes on disk, wall time, peak memory.

Peak memory is the growth of the process's resident set size (RSS) while a
method runs, over what was resident when it started (the base model, and for
LoRA and full fine-tuning the model copy they train, made before measuring:
fine-tuning in place would not need the copy). RSS is sampled from
/proc/self/statm every few milliseconds by a background thread, so it counts
everything torch allocates (weights, gradients, optimiser state, activations)
which tracemalloc cannot see. On CUDA devices torch's own peak counter is used
instead. Freed memory that the allocator keeps can make later methods' growth
read low, so `training_state_bytes` (parameters + gradients + optimiser state
of what is trained, counted exactly) is reported beside it.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch

SAMPLE_SECONDS = 0.005
Trained = TypeVar("Trained")


def rss_bytes() -> int:
    """Current resident set size; falls back to the peak so far where /proc is missing."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakMemory:
    """Context manager: `.peak_increase` = peak bytes over the level at entry (RSS, or CUDA allocations)."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.cuda = torch.device(device).type == "cuda"
        self.peak_increase = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakMemory:
        if self.cuda:  # GPU memory is the allocator's: its own counter
            self._allocator = AllocatorPeak("cuda").__enter__()
            return self
        self._start = self._peak = rss_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, rss_bytes())
            time.sleep(SAMPLE_SECONDS)

    def __exit__(self, *exc) -> bool:
        if self.cuda:
            self._allocator.__exit__(*exc)
            self.peak_increase = self._allocator.peak_increase
            return False
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, rss_bytes())
        self.peak_increase = max(0, self._peak - self._start)
        return False


class AllocatorPeak:
    """Context manager: `.peak_increase` = peak bytes of tensors torch allocated, over the level at entry.

    Unlike RSS this does not count memory the C allocator keeps after torch freed
    it, so it does not depend on what ran before in the process. On CUDA it is
    the caching allocator's own peak counter; on CPU, where torch keeps no such
    counter, the allocation and free events of torch's profiler are summed in
    order (every tensor, including kernels' scratch tensors). The profiler slows
    the run: take times without it.
    """

    def __init__(self, device: torch.device | str = "cpu"):
        self.cuda = torch.device(device).type == "cuda"
        self.peak_increase = 0

    def __enter__(self) -> AllocatorPeak:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._start = torch.cuda.memory_allocated()
            return self
        from torch.profiler import ProfilerActivity, profile

        self._profile = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
        self._profile.__enter__()
        return self

    def __exit__(self, *exc) -> bool:
        if self.cuda:
            torch.cuda.synchronize()
            self.peak_increase = torch.cuda.max_memory_allocated() - self._start
            return False
        self._profile.__exit__(*exc)
        events = [e for e in self._profile.profiler.kineto_results.events() if e.name() == "[memory]"]
        level = 0
        for event in sorted(events, key=lambda e: e.start_ns()):
            level += event.nbytes()  # negative for a free
            self.peak_increase = max(self.peak_increase, level)
        return False


class Stopwatch:
    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc) -> bool:
        self.seconds = time.perf_counter() - self.start
        return False


def files_bytes(folder: str | Path, names: Iterable[str] | None = None) -> int:
    """Bytes of the files in `folder` (only `names`, when given): what a user stores."""
    folder = Path(folder)
    paths = [folder / n for n in names] if names is not None else [p for p in folder.iterdir() if p.is_file()]
    return sum(p.stat().st_size for p in paths)


def parameter_counts(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters; shared (tied) tensors count once, a quantised matrix as its out x in."""
    from ..quant import weight_count

    params = list(model.parameters())  # parameters() already yields each shared tensor once
    return sum(p.numel() for p in params if p.requires_grad), weight_count(model)


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def training_state_bytes(params: Iterable[torch.Tensor], optimizer: torch.optim.Optimizer) -> int:
    """Trained parameters + their gradients + the optimiser's tensors: memory training adds, exactly."""
    params = list(params)
    state = [v for s in optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
    return 2 * tensor_bytes(params) + tensor_bytes(state)


@dataclass(frozen=True)
class Scored:
    """A trained method's test figures and what training plus scoring cost."""

    test: dict
    peak_memory_bytes: int
    eval_seconds: float


def train_and_score(
    device: torch.device | str, train: Callable[[], Trained], score: Callable[[Trained], dict]
) -> tuple[Trained, Scored]:
    """Run `train()`, then `score(trained)` (timed), under one peak-memory measurement."""
    with PeakMemory(device) as memory:
        trained = train()
        with Stopwatch() as clock:
            test = score(trained)
    return trained, Scored(test, memory.peak_increase, clock.seconds)
