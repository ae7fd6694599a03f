"""Batcher on a fake model and operation: merging, bounds, timeouts, isolation of failures, streaming, draining."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

import pytest

from softprompt.serve.batcher import Batcher, QueueFull, RequestTimeout, ShuttingDown


@dataclass(frozen=True)
class Echo:
    """An operation: runs the fake model; `key` tells operations apart (equal keys may share a call)."""

    key: tuple

    def run(self, model, items, cancelled):
        return model(self.key, items)

    def stream(self, model, items, cancelled):
        return model.stream(self.key, items)


class FakeModel:
    """Records each call; answers item -> item.upper(); raises on 'bad'; can be held by a gate."""

    def __init__(self):
        self.calls: list[tuple[object, list]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()  # a call has started (and may be held at the gate)

    def __call__(self, key, items):
        self.entered.set()
        self.gate.wait(10)
        self.calls.append((key, list(items)))
        if any(name == "bad" for name, _ in items):
            raise ValueError("bad input")
        return [f"{name}:{text.upper()}" for name, text in items]

    def stream(self, key, items):
        for step in range(3):
            if any(name == "bad" for name, _ in items) and step == 1:
                raise ValueError("broke mid-stream")
            yield [f"{text}{step}" for _, text in items]


def run(coro):
    return asyncio.run(coro)


async def until_entered(model: FakeModel) -> None:
    """Wait (without blocking the loop) until the worker is inside a model call."""
    for _ in range(1000):
        if model.entered.is_set():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the worker never called the model")


def make(model, **kw) -> Batcher:
    kw.setdefault("batch_wait_s", 0.05)
    return Batcher(model, **kw)


def test_requests_arriving_together_share_one_call_across_prompts():
    model = FakeModel()

    async def main():
        b = make(model)
        b.start()
        jobs = [b.submit(Echo(("classify",)), [(f"p{i}", f"t{i}")]) for i in range(5)]
        results = await asyncio.gather(*jobs)
        await b.close()
        return results

    results = run(main())
    assert results == [[f"p{i}:T{i}"] for i in range(5)]
    assert len(model.calls) == 1
    assert {name for name, _ in model.calls[0][1]} == {f"p{i}" for i in range(5)}


def test_batch_size_bound_and_results_return_to_their_requests():
    model = FakeModel()

    async def main():
        b = make(model, max_batch_size=4)
        b.start()
        jobs = [b.submit(Echo(("k",)), [("p", f"a{i}"), ("q", f"b{i}")]) for i in range(5)]  # 2 rows each
        results = await asyncio.gather(*jobs)
        await b.close()
        return results

    results = run(main())
    assert results == [[f"p:A{i}", f"q:B{i}"] for i in range(5)]
    assert [len(items) for _, items in model.calls] == [4, 4, 2]


def test_different_operations_are_not_merged():
    model = FakeModel()

    async def main():
        b = make(model)
        b.start()
        await asyncio.gather(b.submit(Echo(("classify",)), [("p", "x")]), b.submit(Echo(("generate", 5)), [("p", "y")]))
        await b.close()

    run(main())
    assert sorted(key for key, _ in model.calls) == [("classify",), ("generate", 5)]


def test_full_queue_refuses_and_later_requests_still_work():
    model = FakeModel()
    model.gate.clear()

    async def main():
        b = make(model, max_queue=2, max_batch_size=1, batch_wait_s=0)
        b.start()
        running = asyncio.ensure_future(b.submit(Echo(("k",)), [("p", "0")]))
        await until_entered(model)  # the first is now on the worker (held at the gate)
        waiting = [asyncio.ensure_future(b.submit(Echo(("k",)), [("p", str(i))])) for i in (1, 2)]
        await asyncio.sleep(0)
        assert b.queue_depth == 2
        with pytest.raises(QueueFull, match="max-queue"):
            await b.submit(Echo(("k",)), [("p", "3")])
        model.gate.set()
        done = await asyncio.gather(running, *waiting)
        after = await b.submit(Echo(("k",)), [("p", "4")])
        await b.close()
        return done, after

    done, after = run(main())
    assert done == [["p:0"], ["p:1"], ["p:2"]]
    assert after == ["p:4"]


def test_timeout_raises_and_an_unstarted_request_is_never_run():
    model = FakeModel()
    model.gate.clear()

    async def main():
        b = make(model, timeout_s=0.2, max_batch_size=1, batch_wait_s=0)
        b.start()
        first = asyncio.ensure_future(b.submit(Echo(("k",)), [("p", "slow")]))
        await until_entered(model)
        with pytest.raises(RequestTimeout, match="waiting in the queue"):
            await b.submit(Echo(("k",)), [("p", "never")])
        with pytest.raises(RequestTimeout, match="running"):
            await first
        model.gate.set()
        ok = await b.submit(Echo(("k",)), [("p", "later")])
        await b.close()
        return ok

    assert run(main()) == ["p:LATER"]
    assert [items for _, items in model.calls] == [[("p", "slow")], [("p", "later")]]


def test_a_failing_request_does_not_fail_the_others_in_its_batch():
    model = FakeModel()

    async def main():
        b = make(model)
        b.start()
        jobs = [b.submit(Echo(("k",)), [(name, "x")]) for name in ("a", "bad", "c")]
        results = await asyncio.gather(*jobs, return_exceptions=True)
        await b.close()
        return results

    a, bad, c = run(main())
    assert a == ["a:X"] and c == ["c:X"]
    assert isinstance(bad, ValueError)


def test_event_loop_stays_responsive_while_the_model_runs():
    model = FakeModel()
    model.gate.clear()

    async def main():
        b = make(model, batch_wait_s=0)
        b.start()
        job = asyncio.ensure_future(b.submit(Echo(("k",)), [("p", "x")]))
        start = time.perf_counter()
        for _ in range(5):
            await asyncio.sleep(0.01)  # would hang if the model ran on the loop
        ticked = time.perf_counter() - start
        assert not job.done()
        model.gate.set()
        await job
        await b.close()
        return ticked

    assert run(main()) < 5  # the loop ticked while the worker was blocked


def test_close_answers_everything_queued_then_refuses():
    model = FakeModel()

    async def main():
        b = make(model, max_batch_size=1)
        b.start()
        jobs = [asyncio.ensure_future(b.submit(Echo(("k",)), [("p", str(i))])) for i in range(4)]
        await asyncio.sleep(0)
        await b.close()
        assert len(model.calls) == 4  # every queued request ran before close() returned
        with pytest.raises(ShuttingDown):
            await b.submit(Echo(("k",)), [("p", "late")])
        return await asyncio.gather(*jobs)

    assert run(main()) == [["p:0"], ["p:1"], ["p:2"], ["p:3"]]


def test_stream_yields_steps_in_order_and_reports_errors():
    model = FakeModel()

    async def main():
        b = make(model)
        b.start()
        got = [chunk async for chunk in b.stream(Echo(("g",)), [("p", "a"), ("p", "b")])]
        broken = []
        with pytest.raises(ValueError, match="mid-stream"):
            async for chunk in b.stream(Echo(("g",)), [("bad", "z")]):
                broken.append(chunk)
        await b.close()
        return got, broken

    got, broken = run(main())
    assert got == [["a0", "b0"], ["a1", "b1"], ["a2", "b2"]]
    assert broken == [["z0"]]


class Chunked:
    """An operation that runs its items one at a time, stopping once cancelled; each item waits for a gate."""

    def __init__(self):
        self.done: list = []
        self.gate = threading.Event()

    def run(self, model, items, cancelled):
        for item in items:
            if cancelled():
                break
            self.gate.wait(10)
            self.done.append(item)
        return [None] * len(items)


def test_a_timed_out_call_is_told_it_is_cancelled_and_stops():
    operation = Chunked()

    async def main():
        b = make(FakeModel(), timeout_s=0.2, batch_wait_s=0)
        b.start()
        with pytest.raises(RequestTimeout, match="running"):
            await b.submit(operation, ["a", "b", "c"])
        operation.gate.set()
        await b.call(lambda: None)  # the worker is free again: the timed-out call has returned
        await b.close()

    run(main())
    assert operation.done == ["a"]


def test_a_stream_closed_by_its_consumer_stops_on_the_worker():
    steps = []

    class Endless:
        def stream(self, model, items, cancelled):
            while not cancelled() and len(steps) < 100_000:
                steps.append(1)
                yield ["x"]

    async def main():
        b = make(FakeModel(), batch_wait_s=0)
        b.start()
        chunks = b.stream(Endless(), ["p"])
        assert await anext(chunks) == ["x"]
        await chunks.aclose()  # the client left
        await b.call(lambda: None)
        count = len(steps)
        await b.call(lambda: None)
        await b.close()
        return count

    assert run(main()) == len(steps) < 100_000  # it stopped, and nothing ran after the worker was free


# -- a stepper: continuous batching --------------------------------------------------------------


@dataclass
class News:
    text: str
    finish: str | None = None


class FakeStepper:
    """Each row is (text, steps): it reports one character per step and finishes after `steps` steps."""

    def __init__(self, fail_at: int | None = None, max_rows: int = 8, hold_at: int | None = None):
        self.rows: list[list] = []
        self.steps: list[list[str]] = []  # the rows' texts at each step
        self.fail_at, self.max_rows = fail_at, max_rows
        # Step `hold_at` waits for `release` (after setting `held`): the test queues work meanwhile.
        self.hold_at, self.held, self.release = hold_at, threading.Event(), threading.Event()

    @property
    def busy(self) -> bool:
        return bool(self.rows)

    @property
    def free_rows(self) -> int:
        return self.max_rows - len(self.rows)

    def step(self):
        if self.fail_at is not None and len(self.steps) == self.fail_at:
            self.fail_at = None  # once
            raise RuntimeError("the step broke")
        if len(self.steps) == self.hold_at:
            self.held.set()
            self.release.wait(10)
        self.steps.append([row[0] for row in self.rows])
        events = []
        for row in list(self.rows):
            row[2] += 1
            done = row[2] >= row[1] or row[3]()
            events.append((row, News(row[0][row[2] - 1 : row[2]], "stop" if done else None)))
            if done:
                self.rows.remove(row)
        return events

    def abort(self):
        dropped, self.rows = self.rows, []
        return dropped


@dataclass(frozen=True)
class Spell:
    """A stepped operation: each item (text) becomes a row reporting its characters; "bad" is refused at once."""

    key: str = "spell"

    def join(self, model, stepper, items, cancelled):
        rows, first = [], []
        for text in items:
            row = None if text == "bad" else [text, len(text), 0, cancelled]
            if row is not None:
                stepper.rows.append(row)
            rows.append(row)
            first.append("refused" if row is None else None)
        return rows, first

    def collect(self, chunks, items):
        out = [""] * items
        for chunk in chunks:
            for i, news in enumerate(chunk):
                out[i] += news if isinstance(news, str) else news.text if news else ""
        return out


def test_stepped_requests_join_the_running_batch_and_get_their_own_chunks():
    model, stepper = FakeModel(), FakeStepper(hold_at=1)

    async def main():
        b = make(model, stepper=stepper, batch_wait_s=0)
        b.start()
        long = asyncio.ensure_future(b.submit(Spell(), ["abcdefgh"]))
        while not stepper.held.is_set():  # the worker is inside the second step
            await asyncio.sleep(0.001)
        chunks = b.stream(Spell(), ["xy", "bad"])  # queued now: joins after this step, while "abcdefgh" runs
        stepper.release.set()
        late = [chunk async for chunk in chunks]
        classified = await b.submit(Echo(("classify",)), [("p", "z")])  # between two steps
        result = await long
        await b.close()
        return result, late, classified

    result, late, classified = run(main())
    assert result == ["abcdefgh"] and classified == ["p:Z"]
    assert late[0] == [None, "refused"] and "".join(c[0].text for c in late[1:] if c[0]) == "xy"
    assert any(set(texts) == {"abcdefgh", "xy"} for texts in stepper.steps)  # one step ran both requests' rows


def test_static_scheduling_hands_the_stepper_one_batch_at_a_time():
    stepper = FakeStepper()

    async def main():
        b = make(FakeModel(), stepper=stepper, scheduler="static", batch_wait_s=0.05)
        b.start()
        jobs = [asyncio.ensure_future(b.submit(Spell(), [text])) for text in ("aaaa", "bb", "cccccc")]
        jobs.append(asyncio.ensure_future(b.submit(Spell("other"), ["dd"])))  # another operation: another batch
        results = await asyncio.gather(*jobs)
        await b.close()
        return results

    assert run(main()) == [["aaaa"], ["bb"], ["cccccc"], ["dd"]]
    # The first three (equal operations) ran as one batch to its end; "dd" only then.
    assert "dd" not in {t for texts in stepper.steps[:6] for t in texts}
    assert {t for texts in stepper.steps[6:] for t in texts} == {"dd"}


def test_a_failing_step_fails_its_requests_and_the_batcher_goes_on():
    stepper = FakeStepper(fail_at=2)

    async def main():
        b = make(FakeModel(), stepper=stepper, batch_wait_s=0)
        b.start()
        with pytest.raises(RuntimeError, match="the step broke"):
            await b.submit(Spell(), ["abcdef"])
        after = await b.submit(Spell(), ["ok"])
        await b.close()
        return after

    assert run(main()) == ["ok"]
