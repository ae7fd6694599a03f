"""Hand an operation to the batcher on behalf of one HTTP request, and map what can go wrong to a status.

The one place where the batcher's refusals become HTTP errors (queue full ->
429, timed out or shutting down -> 503), and where a request whose client
has gone away gives up its place: the batcher marks its work cancelled and
the worker stops it at the next batch or decoding step.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any, TypeVar

from fastapi import Request

from .batcher import Operation, QueueFull, RequestTimeout, ShuttingDown
from .errors import CLIENT_GONE, APIError
from .state import ServeState

T = TypeVar("T")


async def answer(state: ServeState, request: Request, operation: Operation, items: Sequence[Any]) -> list[Any]:
    """The results of `operation` for `items`."""
    with _refusals():
        return await _unless_client_leaves(request, state.batcher.submit(operation, items))


async def open_stream(
    state: ServeState, request: Request, operation: Operation, items: Sequence[Any]
) -> tuple[Any, AsyncIterator[Any]]:
    """The first chunk of `operation.stream` (None if there is none) and the iterator of the rest.

    Waiting for the first chunk here, before the response starts, lets queue
    and timeout errors still get their status code. Close the iterator
    (`aclose()`) when the response ends, however it ends: that stops the work.
    """
    with _refusals():
        chunks = state.batcher.stream(operation, items)
        try:
            first = await _unless_client_leaves(request, anext(chunks))
        except StopAsyncIteration:
            first = None
        except BaseException:
            await chunks.aclose()
            raise
    return first, chunks


@contextlib.contextmanager
def _refusals():
    try:
        yield
    except QueueFull as e:
        raise APIError(429, str(e), kind="rate_limit_error") from None
    except (RequestTimeout, ShuttingDown) as e:
        raise APIError(503, str(e), kind="unavailable") from None


async def _unless_client_leaves(request: Request, work: Awaitable[T]) -> T:
    """Await `work`; if the client disconnects first, cancel it (the batcher then drops the job) and give up."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        raise APIError(CLIENT_GONE, "the client went away before its answer was ready")
    return task.result()


async def _disconnected(request: Request) -> None:
    # The body has been read, so the next message the server has for this request is its disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass
