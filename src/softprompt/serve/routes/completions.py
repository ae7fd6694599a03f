"""POST /v1/completions: OpenAI-style completions (`model` names the prompt), whole or as server-sent events."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from ...decode import GenerationConfig
from ...errors import SoftPromptError
from ...infer import InputError
from .. import schemas
from ..checks import check_texts, input_errors, require_prompt
from ..dispatch import answer, open_stream
from ..errors import ERROR_RESPONSES, APIError
from ..operations import Generate
from ..state import State

log = logging.getLogger("softprompt.serve")
router = APIRouter()

MAX_STOP = 4  # as OpenAI


@router.post(
    "/v1/completions",
    response_model=schemas.CompletionResponse,
    responses={**ERROR_RESPONSES, 200: {"content": {"text/event-stream": {}}}},
)
async def completions(body: schemas.CompletionRequest, state: State, request: Request):
    """OpenAI-style completions; `model` names the prompt. `stream: true` sends server-sent events."""
    info = require_prompt(state, body.model, "model")
    if body.n != 1:
        raise APIError(422, f"n={body.n} is not supported: only n=1", param="n")
    if not 1 <= body.max_tokens <= state.settings.max_tokens:
        raise APIError(
            422,
            f"max_tokens must be between 1 and {state.settings.max_tokens}, got {body.max_tokens}",
            param="max_tokens",
        )
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    texts = await check_texts(state, prompts, "prompt", new_tokens=body.max_tokens)
    operation = Generate(_generation_config(body))
    items = [(info.name, text) for text in texts]
    reply = _CompletionReply(info.name, body.max_tokens, state.count_tokens)
    state.metrics.observe_inputs("/v1/completions", len(texts))
    if not body.stream:
        results = await answer(state, request, operation, items)
        input_errors(results, "prompt")
        return reply.response(texts, results)
    first, chunks = await open_stream(state, request, operation, items)
    if first is not None and any(isinstance(piece, InputError) for piece in first):
        await chunks.aclose()  # stops the worker's generation for this request
        input_errors(first, "prompt")
    return _EventStream(
        reply.events(first, chunks, len(texts)),
        on_close=chunks.aclose,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _generation_config(body: schemas.CompletionRequest) -> GenerationConfig:
    stop = [] if body.stop is None else [body.stop] if isinstance(body.stop, str) else body.stop
    if len(stop) > MAX_STOP or any(not s for s in stop):
        raise APIError(422, f"stop takes at most {MAX_STOP} non-empty strings, got {stop!r}"[:300], param="stop")
    try:
        return GenerationConfig.from_options(body, max_new_tokens=body.max_tokens)
    except (SoftPromptError, ValueError) as e:
        raise APIError(422, str(e)) from None


class _EventStream(StreamingResponse):
    """A StreamingResponse that calls `on_close` when it ends, however it ends (done, error, client gone):
    the generator behind it may be left suspended, and its clean-up would wait for the garbage collector."""

    def __init__(self, content, *, on_close: Callable[[], object], **kwargs):
        super().__init__(content, **kwargs)
        self.on_close = on_close

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.on_close()


class _CompletionReply:
    """Builds OpenAI-shaped completion bodies and SSE events for one request."""

    def __init__(self, model: str, max_tokens: int, count_tokens: Callable[[str], int | None]):
        self.model, self.max_tokens, self.count_tokens = model, max_tokens, count_tokens
        self.id, self.created = f"cmpl-{uuid.uuid4().hex}", int(time.time())

    def _finish(self, text: str) -> str:
        n = self.count_tokens(text)
        return "length" if n is not None and n >= self.max_tokens else "stop"

    def response(self, texts: list[str], outputs: list[str]) -> schemas.CompletionResponse:
        usage = None
        counts_in = [self.count_tokens(t) for t in texts]
        counts_out = [self.count_tokens(t) for t in outputs]
        if None not in counts_in and None not in counts_out:
            usage = schemas.Usage(
                prompt_tokens=sum(counts_in),
                completion_tokens=sum(counts_out),
                total_tokens=sum(counts_in) + sum(counts_out),
            )
        return schemas.CompletionResponse(
            id=self.id,
            created=self.created,
            model=self.model,
            choices=[
                schemas.CompletionChoice(text=out, index=i, finish_reason=self._finish(out))
                for i, out in enumerate(outputs)
            ],
            usage=usage,
        )

    def _event(self, index: int, text: str, finish: str | None) -> str:
        body = {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [{"text": text, "index": index, "logprobs": None, "finish_reason": finish}],
        }
        return f"data: {json.dumps(body)}\n\n"

    async def events(self, first: list[str] | None, rest: AsyncIterator[list[str]], rows: int) -> AsyncIterator[str]:
        texts = [""] * rows
        try:
            step = first
            while step is not None:
                for i, piece in enumerate(step):
                    if piece and isinstance(piece, str):
                        texts[i] += piece
                        yield self._event(i, piece, None)
                step = await anext(rest, None)
            for i, text in enumerate(texts):
                yield self._event(i, "", self._finish(text))
        except Exception as e:  # the status line is gone: report in-band, as OpenAI does
            log.exception("stream failed")
            message = e.message if isinstance(e, InputError) else f"generation failed: {e}"
            yield f"data: {json.dumps({'error': {'message': message, 'type': 'server_error', 'code': 500}})}\n\n"
        yield "data: [DONE]\n\n"
