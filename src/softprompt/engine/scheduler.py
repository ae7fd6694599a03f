"""The engine's scheduler: which sequences hold a row, which run this step and how many of their tokens.

It decides, and never runs the model (runner.py does), as vLLM's V1 Scheduler
hands its SchedulerOutput to the model runner and reads back what the runner
made (`update_from_output`). One step:

1. `schedule()`: sequences nobody waits for any more (`cancelled()`) leave and
   their rows are freed. Waiting sequences are admitted in arrival order while
   there is a free row and their whole key/value need (prompt + input + max new
   tokens) fits in the cache's byte budget. That need is reserved up front, so a
   running sequence never runs out of room and nothing is ever preempted; one
   that does not fit waits (its request may time out), one that could never fit
   is refused by `add`. The plan: the decoding rows (one token each), then what
   is left of `step_tokens` for the admitted sequences' inputs, in arrival order,
   in chunks, so a long input never stalls the decoding rows for long.
2. `update(events)`: finished sequences leave; sequences whose input is complete
   join the decoding rows; an idle cache gives its memory back.

Row layout is the scheduler's too (as vLLM's KV cache manager, which lives in
its scheduler, places blocks): decoding rows are kept at 0..D-1, so their
forward reads one view of the cache, and a row that leaves is filled by moving
one other row into it (`SlotCache.copy_row` / `swap_rows`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from ..errors import SoftPromptError
from .sequence import CANCELLED, Delta, Sequence
from .slots import SlotCache

Events = list[tuple[Sequence, Delta]]


@dataclass
class StepPlan:
    """What one step runs: the runner's whole input."""

    admitted: list[Sequence] = field(default_factory=list)  # joined now: their prompt goes into their row first
    decoding: list[Sequence] = field(default_factory=list)  # rows 0..D-1, one token each (the one sampled last)
    chunks: list[tuple[Sequence, int]] = field(default_factory=list)  # (sequence, input tokens to run)
    cancelled: Events = field(default_factory=list)  # sequences dropped before the step (already gone)


class Scheduler:
    """Rows, queue and budget of the engine; see the module docstring."""

    def __init__(self, cache: SlotCache, *, max_rows: int, step_tokens: int):
        if max_rows < 1 or step_tokens < max_rows:
            raise SoftPromptError(f"need 1 <= max_rows <= step_tokens, got {max_rows} and {step_tokens}")
        self.cache, self.max_rows, self.step_tokens = cache, max_rows, step_tokens
        self.rows: list[Sequence] = []  # by cache row: [0, decoding) decode, the rest are being prefilled
        self.decoding = 0
        self.prefilling: list[Sequence] = []  # admitted, input not complete, in arrival order
        self.waiting: deque[Sequence] = deque()

    def add(self, seq: Sequence) -> None:
        """Queue `seq`; it joins at a coming step. Refuses one that could never fit in the cache."""
        if not self.cache.fits(1, seq.need):
            held = self.cache.max_bytes // self.cache.token_bytes
            raise SoftPromptError(
                f"the request needs {seq.need} tokens of key/value cache (prompt, input and max_tokens); "
                f"the server's cache holds {held} (--kv-cache-mb): ask for fewer tokens"
            )
        self.waiting.append(seq)

    @property
    def busy(self) -> bool:
        return bool(self.rows or self.waiting)

    @property
    def free_rows(self) -> int:
        """Rows that new sequences could take now (running and waiting ones counted)."""
        return self.max_rows - len(self.rows) - len(self.waiting)

    def abort(self) -> list[Sequence]:
        """Drop every sequence (after a failed step); return them."""
        dropped = [*self.rows, *self.waiting]
        self.rows, self.prefilling, self.waiting, self.decoding = [], [], deque(), 0
        self.cache.clear()
        for seq in dropped:
            seq.row = -1
        return dropped

    # -- one step ----------------------------------------------------------------------------

    def schedule(self) -> StepPlan:
        """Drop cancelled sequences, admit waiting ones; what the runner runs now."""
        plan = StepPlan()
        for seq in [s for s in (*self.rows, *self.waiting) if s.cancelled()]:
            self._remove(seq)
            plan.cancelled.append((seq, Delta(finish=CANCELLED)))
        plan.admitted = self._admit()
        plan.decoding = self.rows[: self.decoding]
        plan.chunks = self._prefill_plan(self.step_tokens - len(plan.decoding))
        return plan

    def update(self, events: Events) -> None:
        """After the runner: finished sequences leave, prefilled ones start decoding."""
        for seq, delta in events:
            if delta.finish and seq.row >= 0:
                self._remove(seq)
        for seq in [s for s in self.prefilling if s.prefilled]:
            self._promote(seq)
        if not self.rows:
            self.cache.clear()  # idle: give the memory back

    # -- admission and layout -------------------------------------------------------------------

    def _admit(self) -> list[Sequence]:
        admitted = []
        while self.waiting and len(self.rows) < self.max_rows:
            seq = self.waiting[0]
            length = max(s.need for s in (*self.rows, seq))
            if not self.cache.fits(len(self.rows) + 1, length):
                break  # first come, first served: later (smaller) sequences do not overtake it
            self.waiting.popleft()
            self.cache.reserve(len(self.rows) + 1, length, live=len(self.rows))
            seq.row, seq.length = len(self.rows), seq.prompt_length
            self.rows.append(seq)
            self.prefilling.append(seq)
            admitted.append(seq)
        return admitted

    def _prefill_plan(self, budget: int) -> list[tuple[Sequence, int]]:
        """(sequence, input tokens to run) in arrival order, within `budget` tokens."""
        plan = []
        for seq in self.prefilling:
            if budget <= 0:
                break
            n = min(len(seq.ids) - seq.fed, budget)
            plan.append((seq, n))
            budget -= n
        return plan

    def _promote(self, seq: Sequence) -> None:
        """A prefilled sequence joins the decoding rows (kept contiguous: one view, no copy, per step)."""
        self.prefilling.remove(seq)
        if seq.row != self.decoding:
            self._swap(seq.row, self.decoding)
        self.decoding += 1

    def _remove(self, seq: Sequence) -> None:
        """Free `seq`'s row: the last decoding row takes its place, the last row takes that one's."""
        if seq.row < 0:
            self.waiting.remove(seq)
            return
        hole = seq.row
        if hole < self.decoding:
            self.decoding -= 1
            self._move(self.decoding, hole)
            hole = self.decoding
        else:
            self.prefilling.remove(seq)
        self._move(len(self.rows) - 1, hole)
        self.rows.pop()
        seq.row = -1

    def _move(self, source: int, target: int) -> None:
        if source != target:
            self.cache.copy_row(source, target, self.rows[source].length)
            self.rows[target] = self.rows[source]
            self.rows[target].row = target

    def _swap(self, a: int, b: int) -> None:
        self.cache.swap_rows(a, b, max(self.rows[a].length, self.rows[b].length))
        self.rows[a], self.rows[b] = self.rows[b], self.rows[a]
        self.rows[a].row, self.rows[b].row = a, b
