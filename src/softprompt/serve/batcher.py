"""Batcher: many concurrent requests -> few model calls, on one worker thread.

Each request is an *operation* (what to compute, e.g. `operations.Classify`
or `operations.Generate` with its sampling settings) and a list of items.
Requests are queued (bounded: a full queue raises QueueFull -> HTTP 429). A
collector task on the event loop takes the oldest request, waits a moment
(`batch_wait_s`) for requests arriving together, and packs every queued
request with an equal operation into one call, up to `max_batch_size` rows,
whatever prompt each row names: the predictor runs mixed-prompt batches. The
call, `operation.run(model, items, cancelled)`, runs on a single worker
thread, so the event loop keeps accepting, answering /health and queueing
while the model computes, and requests that arrive meanwhile form the next
batch. The batcher never looks inside an operation: a new kind of work is a
new operation class, not a new branch here.

A request not answered within `timeout_s` raises RequestTimeout (-> 503); if
it had not started it is dropped from the queue, and if it had, `cancelled()`
turns true once every request of its call is timed out or abandoned (the
client left), and the operation stops at its next batch or decoding step. A
call that raises is rerun one request at a time so one bad request cannot
fail the others.

Generation can instead run on a *stepper* (`engine.Engine`, given as
`stepper=`): continuous batching. An operation with `join` hands its items to
the stepper as rows; the collector then alternates between one stepper step
(every running row advances one token; rows join and leave at each step) and
at most one call of other work (a classification batch), so neither starves
the other. Each step's chunks go to their requests, streamed or not. With
`scheduler="static"` the stepper is handed requests as the old batcher did
(reproduced for comparison): only when it is idle, streams alone, others only
with an equal operation, so a batch runs to its end while new requests wait.

Streaming jobs of operations without `join` run alone; their chunks cross
from the worker thread to the event loop through an asyncio queue; a
consumer that stops (the client left) stops the generation.

`close()` refuses new requests and waits until everything queued or running
has been answered: graceful shutdown.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Hashable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from .config import SCHEDULERS

Cancelled = Callable[[], bool]


class Operation(Hashable, Protocol):
    """One kind of model work; requests with equal operations may share a call."""

    def run(self, model: Any, items: list[Any], cancelled: Cancelled) -> Sequence[Any]:
        """One result per item; may stop early (results unused) once `cancelled()`."""
        ...

    def stream(self, model: Any, items: list[Any], cancelled: Cancelled) -> Iterator[Any]:
        """Chunks as they are computed; needed only by operations that are streamed (`Batcher.stream`)."""
        ...


class Stepped(Operation, Protocol):
    """An operation whose items become rows of a running stepper (continuous batching)."""

    def join(self, model: Any, stepper: Stepper, items: list[Any], cancelled: Cancelled) -> tuple[list, list]:
        """Add a row per item to `stepper`: (the rows, None for an item without one; the chunk to send at once)."""
        ...

    def collect(self, chunks: list[Any], items: int) -> list[Any]:
        """The results of a request that was not streamed, from all its chunks."""
        ...


class Stepper(Protocol):
    """A loop of model steps that rows join and leave (engine.Engine)."""

    busy: bool  # rows running or waiting
    free_rows: int  # rows it would take now

    def step(self) -> list[tuple[Any, Any]]:
        """(row, chunk) for each row with news; a chunk whose `finish` is set ends its row."""
        ...

    def abort(self) -> list[Any]:
        """Drop every row (after a failed step)."""
        ...


class QueueFull(Exception):
    """The queue holds max_queue requests already."""


class RequestTimeout(Exception):
    """The request was not answered within timeout_s."""


class ShuttingDown(Exception):
    """The server is draining and takes no new requests."""


_END = object()  # end of a stream


@dataclass(eq=False)
class _Job:
    operation: Operation
    items: list[Any]
    future: asyncio.Future
    enqueued: float
    sink: asyncio.Queue | None = None  # set for streaming jobs
    cancelled: bool = False  # timed out or abandoned: nobody wants the answer any more
    started: bool = False
    open_rows: int = 0  # stepped jobs: rows still running on the stepper
    chunks: list | None = None  # stepped jobs not streamed: every chunk, for the result


class Batcher:
    def __init__(
        self,
        model: Any,
        *,
        max_batch_size: int = 32,
        max_queue: int = 256,
        timeout_s: float = 30.0,
        batch_wait_s: float = 0.002,
        on_batch: Callable[[int, int, float], None] | None = None,
        stepper: Stepper | None = None,
        scheduler: str = "continuous",
    ):
        if scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {scheduler!r}")
        self.model = model  # what operations run on (the predictor)
        self.stepper, self.scheduler = stepper, scheduler
        self._owners: dict[int, tuple[_Job, int]] = {}  # id(row) -> (its job, its item's index)
        self.max_batch_size = max_batch_size
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self.batch_wait_s = batch_wait_s
        self.on_batch = on_batch  # (rows, requests, seconds) after each model call
        self._pending: collections.deque[_Job] = collections.deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._closing = False
        # One thread: the model is not run concurrently with itself (and gains nothing from it on CPU).
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="softprompt-model")

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        """Start the collector on the running event loop."""
        if self._task is None:
            self._wakeup = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._collect(), name="softprompt-batcher")

    async def close(self) -> None:
        """Take no new requests; answer everything queued or running; stop the worker."""
        self._closing = True
        if self._task is not None:
            self._wakeup.set()
            await self._task
        self._executor.shutdown(wait=True)

    @property
    def queue_depth(self) -> int:
        return sum(not job.cancelled for job in self._pending)

    async def call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the model's worker thread, between batches (e.g. to change the prompt set)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    # -- requests -----------------------------------------------------------------

    async def submit(self, operation: Operation, items: Sequence[Any]) -> list[Any]:
        """Results of `operation` for `items`, computed in a batch with other requests of an equal operation."""
        job = self._enqueue(operation, items, sink=None)
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), self.timeout_s)
        except asyncio.TimeoutError:
            job.cancelled = True
            raise RequestTimeout(self._timeout_message(job)) from None
        except asyncio.CancelledError:
            job.cancelled = True  # the client went away: do not compute for nobody
            raise

    def stream(self, operation: Operation, items: Sequence[Any]) -> AsyncIterator[Any]:
        """Chunks of `operation` for `items` as the worker produces them (`operation.stream`, or the stepper's steps).

        Queues the job at once (raising QueueFull or ShuttingDown here); the
        timeout covers the wait for the first chunk, after which the stream
        runs to its end, or until the iterator is closed (`aclose()`).
        """
        return self._chunks(self._enqueue(operation, items, sink=asyncio.Queue()))

    async def _chunks(self, job: _Job) -> AsyncIterator[Any]:
        try:
            try:
                chunk = await asyncio.wait_for(job.sink.get(), self.timeout_s)
            except asyncio.TimeoutError:
                job.cancelled = True
                raise RequestTimeout(self._timeout_message(job)) from None
            while chunk is not _END:
                if isinstance(chunk, BaseException):
                    raise chunk
                yield chunk
                chunk = await job.sink.get()
        finally:
            job.cancelled = True  # stops the worker if the client left mid-stream

    def _enqueue(self, operation: Operation, items: Sequence[Any], sink: asyncio.Queue | None) -> _Job:
        if self._task is None:
            raise RuntimeError("Batcher.start() was not called")
        if self._closing:
            raise ShuttingDown("the server is shutting down and takes no new requests")
        while self._pending and self._pending[0].cancelled:
            self._pending.popleft()
        if self.queue_depth >= self.max_queue:
            raise QueueFull(
                f"the server is busy: {self.max_queue} requests are already waiting (--max-queue); retry shortly"
            )
        job = _Job(operation, list(items), asyncio.get_running_loop().create_future(), time.monotonic(), sink)
        job.future.add_done_callback(_retrieve)  # a timed-out request's late error is not "never retrieved"
        self._pending.append(job)
        self._wakeup.set()
        return job

    def _timeout_message(self, job: _Job) -> str:
        where = "running" if job.started else "waiting in the queue"
        return f"the request timed out after {self.timeout_s:g} s (still {where}; --timeout); retry later"

    def _stepped(self, job: _Job) -> bool:
        return self.stepper is not None and hasattr(job.operation, "join")

    # -- the collector --------------------------------------------------------------

    async def _collect(self) -> None:
        while True:
            while not self._live_pending() and not self._stepping():
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
            if self.batch_wait_s and not self._closing and not self._stepping():
                await asyncio.sleep(self.batch_wait_s)  # let requests that arrive together join
            for job in self._take_joining():
                await self._join(job)
            batch = self._take_batch()
            if batch and batch[0].sink is not None:
                await self._run_stream(batch[0])
            elif batch:
                await self._run_batch(batch)
            if self._stepping():
                await self._step()

    def _stepping(self) -> bool:
        return self.stepper is not None and bool(self._owners or self.stepper.busy)

    def _live_pending(self) -> bool:
        while self._pending and self._pending[0].cancelled:
            self._pending.popleft()
        return bool(self._pending)

    def _take(self, stepped: bool, limit: int) -> list[_Job]:
        """The oldest live job of that kind, plus (unless it is streamed: streams run alone) every queued job
        of that kind with an equal operation, not streamed, within `limit` rows."""
        kind = [job for job in self._pending if not job.cancelled and self._stepped(job) == stepped]
        if not kind:
            return []
        first, rows = kind[0], len(kind[0].items)
        batch = [first]
        for job in kind[1:] if first.sink is None else ():
            if job.sink is None and job.operation == first.operation and rows + len(job.items) <= limit:
                batch.append(job)
                rows += len(job.items)
        taken = set(map(id, batch))
        self._pending = collections.deque(job for job in self._pending if id(job) not in taken and not job.cancelled)
        return batch

    def _take_batch(self) -> list[_Job]:
        return self._take(stepped=False, limit=self.max_batch_size)

    def _take_joining(self) -> list[_Job]:
        """Jobs whose rows join the stepper now: continuous, whatever fits in its free rows; static, one batch
        as the old batcher made them, only when the stepper is idle."""
        if self.stepper is None:
            return []
        if self.scheduler == "static":
            return [] if self._stepping() else self._take(stepped=True, limit=self.max_batch_size)
        joining, free = [], self.stepper.free_rows
        for job in self._pending:
            if free <= 0:
                break
            if not job.cancelled and self._stepped(job):
                joining.append(job)
                free -= len(job.items)
        taken = set(map(id, joining))
        self._pending = collections.deque(job for job in self._pending if id(job) not in taken)
        return joining

    async def _join(self, job: _Job) -> None:
        job.started = True
        try:
            rows, first = await self.call(
                lambda: job.operation.join(self.model, self.stepper, job.items, lambda: job.cancelled)
            )
        except Exception as e:
            self._deliver(job, e)
            self._end(job)
            return
        job.chunks = None if job.sink is not None else []
        for index, row in enumerate(rows):
            if row is not None:
                self._owners[id(row)] = (job, index)
                job.open_rows += 1
        if any(chunk is not None for chunk in first):
            self._deliver(job, first)
        if not job.open_rows:
            self._end(job)

    async def _step(self) -> None:
        start = time.perf_counter()
        try:
            events = await self.call(self.stepper.step)
        except Exception as e:  # a failed step fails every request on the stepper
            dropped = await self.call(self.stepper.abort)
            jobs = {
                id(job): job for job, _ in (self._owners.pop(id(row)) for row in dropped if id(row) in self._owners)
            }
            for job in jobs.values():
                self._deliver(job, e)
                self._end(job)
            return
        news: dict[int, tuple[_Job, list]] = {}
        ended = []
        for row, chunk in events:
            job, index = self._owners[id(row)]
            step = news.setdefault(id(job), (job, [None] * len(job.items)))[1]
            step[index] = chunk
            if chunk.finish:
                del self._owners[id(row)]
                job.open_rows -= 1
                if not job.open_rows:
                    ended.append(job)
        for job, step in news.values():
            self._deliver(job, step)
        for job in ended:
            self._end(job)
        if self.on_batch is not None and news:
            self.on_batch(len(events), len(news), time.perf_counter() - start)

    def _deliver(self, job: _Job, chunk: Any) -> None:
        if job.sink is not None:
            job.sink.put_nowait(chunk)
        elif isinstance(chunk, BaseException):
            _settle(job.future, error=chunk)
        else:
            job.chunks.append(chunk)

    def _end(self, job: _Job) -> None:
        if job.sink is not None:
            job.sink.put_nowait(_END)
            _settle(job.future, result=None)
        elif not job.future.done():
            try:
                _settle(job.future, result=job.operation.collect(job.chunks, len(job.items)))
            except Exception as e:  # a bug in the operation fails its request, not the batcher
                _settle(job.future, error=e)

    async def _run_batch(self, batch: list[_Job]) -> None:
        for job in batch:
            job.started = True
        items = [item for job in batch for item in job.items]
        cancelled = lambda: all(job.cancelled for job in batch)
        start = time.perf_counter()
        try:
            results = await self.call(lambda: list(batch[0].operation.run(self.model, items, cancelled)))
        except Exception as e:
            if len(batch) == 1:
                _settle(batch[0].future, error=e)
                return
            for job in batch:  # find the culprit: rerun each request on its own
                if not job.cancelled:
                    await self._run_batch([job])
            return
        if self.on_batch is not None:
            self.on_batch(len(items), len(batch), time.perf_counter() - start)
        if len(results) != len(items):
            error = RuntimeError(f"the operation returned {len(results)} results for {len(items)} inputs")
            for job in batch:
                _settle(job.future, error=error)
            return
        offset = 0
        for job in batch:
            _settle(job.future, result=results[offset : offset + len(job.items)])
            offset += len(job.items)

    async def _run_stream(self, job: _Job) -> None:
        job.started = True
        loop = asyncio.get_running_loop()
        put = lambda chunk: loop.call_soon_threadsafe(job.sink.put_nowait, chunk)

        def work() -> None:
            chunks = job.operation.stream(self.model, job.items, lambda: job.cancelled)
            try:
                for chunk in chunks:
                    if job.cancelled:
                        break
                    put(chunk)
            except Exception as e:  # reported to the client as an error event
                put(e)
            finally:
                getattr(chunks, "close", lambda: None)()  # a generator stops computing now, not when collected
                put(_END)

        start = time.perf_counter()
        await self.call(work)
        if self.on_batch is not None:
            self.on_batch(len(job.items), 1, time.perf_counter() - start)
        _settle(job.future, result=None)


def _retrieve(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()


def _settle(future: asyncio.Future, *, result: Any = None, error: BaseException | None = None) -> None:
    with contextlib.suppress(asyncio.InvalidStateError):
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
