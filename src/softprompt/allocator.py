"""Make glibc's malloc give freed memory back to the system: what a quantised model's memory needs.

A quantised model's training step dequantises every weight a tile at a time
(forward, recomputed forward, backward): thousands of blocks of a few MB,
allocated and freed per step, between the activations autograd keeps. glibc
serves blocks above its mmap threshold (128 KiB at first) with a mapping of
their own, unmapped when freed; but after the first such free it raises the
threshold to that block's size (up to 32 MiB), so from then on the tiles come
from the heap, whose holes between kept blocks it cannot return. RSS then
grows by freed memory: on Qwen2.5-1.5B int8 with full recompute the step
peaked at 5.9 GB with the threshold left to glibc, against 1.8 GB of weights
(benchmarks/results/scale/README.md). A fixed threshold keeps every large
block a mapping of its own, freed for real; `malloc_trim` returns what a
load left free in the heap.

Process-wide and idempotent; does nothing where the C library is not glibc
(macOS, musl, Windows): their allocators behave otherwise, and ctypes may not
find these functions there.
"""

from __future__ import annotations

import ctypes
import functools
import os

# mallopt's parameter number (malloc.h), and the threshold: blocks from 4 MiB up get a mapping of their own.
# Each such block costs a page fault per 4 KiB when first written, so the threshold trades speed for memory:
# 4 MiB held 1.5B int8's step to 2.76 GB for a few percent of time; 256 KiB saved 0.2 GB more on SmolLM2-135M
# and cost 28% of its step (every activation a fresh mapping).
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 4 * 1024 * 1024


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
        return ctypes.CDLL("libc.so.6")
    except (ValueError, OSError, AttributeError):  # no confstr name (not glibc), no such library
        return None


def return_freed_memory() -> bool:
    """Fix glibc's mmap threshold (large freed blocks go back to the system) and trim the heap now.

    Returns whether it applied (glibc only).
    """
    libc = _glibc()
    if libc is None:
        return False
    libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    libc.malloc_trim(0)
    return True
