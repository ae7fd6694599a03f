"""The scheduler alone, with no model run: who is admitted, what each step runs, who leaves (engine/scheduler.py)."""

from __future__ import annotations

import pytest

from softprompt.decode import GenerationConfig, eos_token_ids
from softprompt.engine import CANCELLED, Delta, Sequence
from softprompt.engine.scheduler import Scheduler
from softprompt.engine.slots import SlotCache
from softprompt.errors import SoftPromptError


def scheduler(base, *, rows: int = 4, step_tokens: int = 8, tokens: int = 10_000) -> Scheduler:
    probe = SlotCache(base.family, dtype=base.dtype, device=base.device, max_bytes=1, max_rows=rows)
    cache = SlotCache(
        base.family, dtype=base.dtype, device=base.device, max_bytes=tokens * probe.token_bytes, max_rows=rows
    )
    return Scheduler(cache, max_rows=rows, step_tokens=step_tokens)


def sequence(base, n_ids: int, new: int = 3, **kwargs) -> Sequence:
    return Sequence(None, [5] * n_ids, GenerationConfig(new), new, eos_token_ids(base), base.tokenizer, **kwargs)


def ran(plan) -> None:
    """What the runner does to the sequences' progress, without the model."""
    for seq in plan.decoding:
        seq.length += 1
    for seq, n in plan.chunks:
        seq.fed += n
        seq.length += n


def test_decoding_rows_go_first_and_inputs_are_prefilled_in_chunks_in_arrival_order(tiny_models):
    base = tiny_models("llama")
    s = scheduler(base, step_tokens=8)
    first, second = sequence(base, 6), sequence(base, 5)
    s.add(first)
    s.add(second)
    plan = s.schedule()
    assert plan.admitted == [first, second] and not plan.decoding
    assert plan.chunks == [(first, 6), (second, 2)]  # 8 tokens: the first input whole, 2 of the second
    ran(plan)
    s.update([])
    assert s.decoding == 1 and s.rows[0] is first  # a complete input joins the decoding rows
    plan = s.schedule()
    assert plan.decoding == [first] and plan.chunks == [(second, 3)] and not plan.admitted


def test_admission_is_first_come_first_served_within_the_key_value_budget(tiny_models):
    base = tiny_models("llama")
    big, small = sequence(base, 20), sequence(base, 2)
    s = scheduler(base, tokens=big.need + 4)  # room for the big one, or the small one, not both
    s.add(big)
    s.add(small)
    assert s.schedule().admitted == [big] and list(s.waiting) == [small]
    with pytest.raises(SoftPromptError, match="--kv-cache-mb"):
        s.add(sequence(base, 200))


def test_finished_and_cancelled_sequences_leave_and_an_idle_cache_is_freed(tiny_models):
    base = tiny_models("llama")
    gone = {"flag": False}
    s = scheduler(base)
    keep, leaver = sequence(base, 2), sequence(base, 2, cancelled=lambda: gone["flag"])
    s.add(keep)
    s.add(leaver)
    ran(s.schedule())
    s.update([])
    gone["flag"] = True
    plan = s.schedule()
    assert [(seq, d.finish) for seq, d in plan.cancelled] == [(leaver, CANCELLED)] and s.rows == [keep]
    s.update([(keep, Delta(finish="length"))])
    assert not s.busy and s.cache.nbytes == 0
