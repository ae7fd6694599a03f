"""The prompt KV cache: computed once per key, LRU eviction by bytes, content-keyed."""

import torch

from softprompt.forward import PrefixKV
from softprompt.prompt_cache import PromptCache, prompt_hash


def fake_prefix(t: int, layers: int = 2) -> PrefixKV:
    """A PrefixKV of known size: 2 * layers * t * 4 floats * 4 bytes = 32 * layers * t bytes."""
    kv = [torch.zeros(1, 1, t, 4) for _ in range(layers)]
    return PrefixKV(kv, [k.clone() for k in kv], torch.ones(1, t, dtype=torch.long), torch.tensor([t]))


class Counter:
    def __init__(self):
        self.calls = 0

    def make(self, t):
        def compute():
            self.calls += 1
            return fake_prefix(t)

        return compute


def test_computes_once_per_key_and_counts_hits():
    cache, counter = PromptCache(10_000), Counter()
    first = cache.get(("m", "a"), counter.make(5))
    again = cache.get(("m", "a"), counter.make(5))
    assert again is first and counter.calls == 1
    cache.get(("m", "b"), counter.make(5))
    stats = cache.stats
    assert (stats["hits"], stats["misses"], stats["entries"]) == (1, 2, 2)
    assert stats["bytes"] == 2 * fake_prefix(5).nbytes()


def test_evicts_least_recently_used_by_bytes():
    size = fake_prefix(10).nbytes()
    cache, counter = PromptCache(2 * size), Counter()
    cache.get(("m", "a"), counter.make(10))
    cache.get(("m", "b"), counter.make(10))
    cache.get(("m", "a"), counter.make(10))  # a is now the most recent
    cache.get(("m", "c"), counter.make(10))  # evicts b
    assert ("m", "a") in cache and ("m", "c") in cache and ("m", "b") not in cache
    assert cache.stats["bytes"] <= 2 * size and cache.stats["evictions"] == 1
    cache.get(("m", "b"), counter.make(10))
    assert counter.calls == 4  # b had to be recomputed


def test_one_large_entry_evicts_several_small_ones_and_oversize_is_not_kept():
    small = fake_prefix(2).nbytes()
    cache, counter = PromptCache(4 * small), Counter()
    for name in "abcd":
        cache.get(("m", name), counter.make(2))
    cache.get(("m", "big"), counter.make(6))  # 3 small entries' worth
    assert len(cache) == 2 and ("m", "d") in cache and ("m", "big") in cache
    huge = cache.get(("m", "huge"), counter.make(100))
    assert huge.width == 100 and ("m", "huge") not in cache  # served, not stored
    assert cache.stats["bytes"] <= cache.max_bytes


def test_discard_and_zero_budget():
    cache, counter = PromptCache(10_000), Counter()
    cache.get(("m", "a"), counter.make(3))
    cache.discard(("m", "a"))
    assert len(cache) == 0 and cache.stats["bytes"] == 0
    off = PromptCache(0)
    off.get(("m", "a"), counter.make(3))
    assert len(off) == 0


def test_prompt_hash_follows_contents_not_identity():
    a = torch.randn(4, 8)
    assert prompt_hash(a) == prompt_hash(a.clone())
    b = a.clone()
    b[0, 0] += 1e-3
    assert prompt_hash(a) != prompt_hash(b)
    assert prompt_hash(a) != prompt_hash(a.reshape(8, 4))
