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

Streaming jobs (`stream`) run alone; their chunks cross from the worker
thread to the event loop through an asyncio queue; a consumer that stops
(the client left) stops the generation.

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

Cancelled = Callable[[], bool]


class Operation(Hashable, Protocol):
    """One kind of model work; requests with equal operations may share a call."""

    def run(self, model: Any, items: list[Any], cancelled: Cancelled) -> Sequence[Any]:
        """One result per item; may stop early (results unused) once `cancelled()`."""
        ...

    def stream(self, model: Any, items: list[Any], cancelled: Cancelled) -> Iterator[Any]:
        """Chunks as they are computed; needed only by operations that are streamed (`Batcher.stream`)."""
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
    ):
        self.model = model  # what operations run on (the predictor)
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
        """Chunks of `operation.stream(model, items, ...)` as the worker produces them.

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

    # -- the collector --------------------------------------------------------------

    async def _collect(self) -> None:
        while True:
            while not self._live_pending():
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
            if self.batch_wait_s and not self._closing:
                await asyncio.sleep(self.batch_wait_s)  # let requests that arrive together join
            batch = self._take_batch()
            if not batch:
                continue
            if batch[0].sink is not None:
                await self._run_stream(batch[0])
            else:
                await self._run_batch(batch)

    def _live_pending(self) -> bool:
        while self._pending and self._pending[0].cancelled:
            self._pending.popleft()
        return bool(self._pending)

    def _take_batch(self) -> list[_Job]:
        """The oldest live job plus every queued job with an equal operation that fits in max_batch_size rows."""
        if not self._live_pending():
            return []
        first = self._pending.popleft()
        if first.sink is not None:
            return [first]
        batch, rows, keep = [first], len(first.items), collections.deque()
        while self._pending:
            job = self._pending.popleft()
            if job.cancelled:
                continue
            if job.sink is None and job.operation == first.operation and rows + len(job.items) <= self.max_batch_size:
                batch.append(job)
                rows += len(job.items)
            else:
                keep.append(job)
        self._pending = keep
        return batch

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
