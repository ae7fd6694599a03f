"""The generation engine: iteration-level (continuous) batching over one decoder-only model.

Every call to `step()` is one scheduling decision and at most two model calls,
in the manner of vLLM's V1 engine core (one token budget per step, running
sequences first, then waiting ones in arrival order), split the same way:

- the scheduler (scheduler.py) decides: which sequences join and leave, which
  rows run now and how many input tokens each (admission under the key/value
  byte budget, chunked prefill, row layout);
- the runner (runner.py) runs that plan: the prompt prefixes into new rows, one
  forward for the decoding rows and one for the prefill chunks
  (`forward.slot_hidden_states`), per-row sampling;
- then the scheduler reads what was made (finished rows leave, prefilled ones
  start decoding).

Each row's tokens sit in its own cache row at their positions (slots.py), so
a row's numbers do not depend on which other rows share the step: greedy output
equals the row run alone, sliding-window models included. The engine is not
thread-safe: one worker thread calls it (the server's batcher).
"""

from __future__ import annotations

from collections import deque

import torch

from ..errors import SoftPromptError
from ..families import EXPLICIT_MASKS
from ..models import BaseModel
from .runner import ModelRunner
from .scheduler import Events, Scheduler
from .sequence import Sequence
from .slots import SlotCache


class Engine:
    """Runs many Sequences together; rows join and leave at every step."""

    def __init__(self, base: BaseModel, *, max_rows: int = 32, max_kv_bytes: int = 1 << 30, step_tokens: int = 512):
        problem = engine_problem(base)
        if problem:
            raise SoftPromptError(problem)
        self.base = base
        self.cache = SlotCache(
            base.family, dtype=base.dtype, device=base.device, max_bytes=max_kv_bytes, max_rows=max_rows
        )
        self.scheduler = Scheduler(self.cache, max_rows=max_rows, step_tokens=step_tokens)
        self.runner = ModelRunner(base, self.cache)

    def add(self, seq: Sequence) -> None:
        """Queue `seq`; it joins at a coming step. Refuses one that could never fit in the cache."""
        self.scheduler.add(seq)

    @torch.no_grad()
    def step(self) -> Events:
        """One scheduling decision and its forwards; what each sequence produced."""
        plan = self.scheduler.schedule()
        events = plan.cancelled + self.runner.execute(plan)
        self.scheduler.update(events)
        return events

    def abort(self) -> list[Sequence]:
        """Drop every sequence (after a failed step); return them."""
        return self.scheduler.abort()

    # -- what the server reads ------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self.scheduler.busy

    @property
    def free_rows(self) -> int:
        """Rows that new sequences could take now (running and waiting ones counted)."""
        return self.scheduler.free_rows

    @property
    def rows(self) -> list[Sequence]:
        """Running sequences by cache row: decoding ones first, then those being prefilled."""
        return self.scheduler.rows

    @property
    def decoding(self) -> int:
        return self.scheduler.decoding

    @property
    def waiting(self) -> deque[Sequence]:
        return self.scheduler.waiting


def engine_problem(base: BaseModel) -> str | None:
    """Why `base` cannot run in the engine (None if it can)."""
    if base.is_seq2seq:
        return f"model '{base.name}' is an encoder-decoder; continuous batching needs a decoder-only model"
    if base.family.attn_implementation not in EXPLICIT_MASKS:
        return (
            f"model '{base.name}' uses the '{base.family.attn_implementation}' attention kernel; continuous batching "
            f"needs one that takes explicit masks ({', '.join(EXPLICIT_MASKS)})"
        )
    return None
