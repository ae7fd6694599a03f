"""A bounded LRU of prompt states (keys/values, or inline embeddings), sized by bytes.

A prompt's keys/values depend only on (base model, prompt vectors), never on
the input, so they are computed once and reused by every later call and every
row that uses that prompt. Entries are keyed by the base model's embedding
fingerprint and a hash of the prompt's contents (not its name or path), so a
prompt file rewritten in place gets fresh keys/values, and two names for the
same vectors share one entry. When the entries' bytes exceed the budget, the
least recently used go first.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .forward import PromptState

CacheKey = tuple[str, str]  # (base fingerprint, prompt content hash)


def prompt_hash(embeddings: torch.Tensor) -> str:
    """A hash of the prompt's values (fp32 bytes) and shape."""
    data = embeddings.detach().to("cpu", torch.float32).contiguous()
    digest = hashlib.blake2b(data.numpy().tobytes(), digest_size=16)
    digest.update(str(tuple(data.shape)).encode())
    return digest.hexdigest()


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0


class PromptCache:
    """LRU of PromptState bounded by `max_bytes`; safe to share between threads."""

    def __init__(self, max_bytes: int):
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[CacheKey, PromptState] = OrderedDict()
        self._bytes = 0
        self._stats = CacheStats()
        self._lock = threading.Lock()

    def get(self, key: CacheKey, compute: Callable[[], PromptState]) -> PromptState:
        """The cached entry for `key`, or `compute()` stored (if it fits) and returned."""
        with self._lock:
            if key in self._entries:
                self._stats.hits += 1
                self._entries.move_to_end(key)
                return self._entries[key]
            self._stats.misses += 1
        value = compute()  # outside the lock: other prompts stay servable meanwhile
        with self._lock:
            self._put(key, value)
        return value

    def _put(self, key: CacheKey, value: PromptState) -> None:
        size = value.nbytes()
        if size > self.max_bytes:  # would evict everything and still not fit: serve it uncached
            return
        if key in self._entries:  # computed twice by racing threads; keep one
            self._bytes -= self._entries.pop(key).nbytes()
        self._entries[key] = value
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, old = self._entries.popitem(last=False)
            self._bytes -= old.nbytes()
            self._stats.evictions += 1

    def discard(self, key: CacheKey) -> None:
        with self._lock:
            if key in self._entries:
                self._bytes -= self._entries.pop(key).nbytes()

    def __contains__(self, key: CacheKey) -> bool:
        with self._lock:
            return key in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    @property
    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "hits": self._stats.hits,
                "misses": self._stats.misses,
                "evictions": self._stats.evictions,
                "bytes": self._bytes,
                "max_bytes": self.max_bytes,
                "entries": len(self._entries),
            }
