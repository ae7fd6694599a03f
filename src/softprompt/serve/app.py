"""The HTTP API: `create_app(predictor, registry, settings)` -> a FastAPI app.

Endpoints: POST /v1/classify, POST /v1/completions (OpenAI-shaped, with SSE
streaming), GET /v1/prompts[/{name}], GET /v1/models, GET /health, GET /metrics;
the schema is at /openapi.json.

Every error is JSON shaped like OpenAI's, `{"error": {"message", "type",
"code", "param"}}`, so OpenAI clients show the message: 400 malformed JSON,
401 missing/wrong API key, 404 unknown prompt, 413 too many or too long
inputs (or too big a body), 422 wrong types, empty inputs and values out of
range, 429 queue full, 503 timed out or shutting down. A 500 would be a bug.

The model runs on the batcher's worker thread; the prompt folder is re-scanned
on that same thread every `poll_interval_s`, between batches, so prompt changes
never race a forward pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import SoftPromptError
from ..infer import GenerationConfig, InputError
from . import schemas
from .batcher import Batcher, QueueFull, RequestTimeout, ShuttingDown
from .config import ServeSettings
from .metrics import ServeMetrics
from .registry import PromptInfo, PromptRegistry, name_problem

log = logging.getLogger("softprompt.serve")

MAX_STOP = 4  # as OpenAI
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": schemas.ErrorResponse, "description": text}
    for code, text in {
        400: "malformed JSON",
        401: "missing or wrong API key",
        404: "unknown prompt",
        413: "too many or too long inputs",
        422: "invalid field values",
        429: "queue full",
        503: "timed out or shutting down",
    }.items()
}


class APIError(Exception):
    def __init__(self, status: int, message: str, *, param: str | None = None, kind: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param = status, message, param
        self.kind = kind or ("invalid_request_error" if status < 500 else "server_error")


def error_response(status: int, message: str, *, param: str | None = None, kind: str | None = None, headers=None):
    kind = kind or ("invalid_request_error" if status < 500 else "server_error")
    body = {"error": {"message": message, "type": kind, "code": status, "param": param}}
    return JSONResponse(body, status_code=status, headers=headers)


def create_app(predictor, registry: PromptRegistry, settings: ServeSettings | None = None) -> FastAPI:
    """A FastAPI app serving `registry`'s prompts with `predictor` (an infer.Predictor or look-alike)."""
    settings = settings or ServeSettings()
    metrics = ServeMetrics()
    batcher = Batcher(
        lambda key, items: _run(predictor, key, items),
        stream_runner=lambda key, items: predictor.stream(items, key[1]),
        max_batch_size=settings.max_batch_size,
        max_queue=settings.max_queue,
        timeout_s=settings.timeout_s,
        batch_wait_s=settings.batch_wait_s,
        on_batch=metrics.observe_batch,
    )
    draining = asyncio.Event()

    async def poll_prompts() -> None:
        while True:
            await asyncio.sleep(settings.poll_interval_s)
            try:
                await batcher.call(registry.refresh)
            except Exception:  # a filesystem hiccup must not stop future polls
                log.exception("re-scanning %s failed", registry.folder)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        await batcher.call(registry.refresh)
        poller = asyncio.create_task(poll_prompts())
        yield
        # uvicorn has stopped accepting and waited for open requests; finish whatever is still queued.
        draining.set()
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller
        await batcher.close()

    app = FastAPI(
        title="softprompt",
        version=__version__,
        summary="Many soft prompts over one frozen language model.",
        lifespan=lifespan,
    )
    app.state.batcher, app.state.metrics, app.state.registry = batcher, metrics, registry
    app.add_middleware(ObserveRequests, metrics=metrics, max_body_bytes=settings.max_body_bytes)
    _add_error_handlers(app)
    auth = [Depends(_api_key_check(settings.api_key))] if settings.api_key else []

    # -- helpers over this app's state ------------------------------------------------

    def require_prompt(name: str, param: str) -> PromptInfo:
        info = None if name_problem(name) else registry.get(name)
        if info is None:
            names = sorted(registry.infos)
            shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
            raise APIError(
                404,
                f"no prompt named {name[:128]!r}; available: {shown or 'none'} (GET /v1/prompts lists them)",
                param=param,
                kind="not_found_error",
            )
        return info

    def check_texts(texts: Sequence[str], param: str) -> list[str]:
        if not texts:
            raise APIError(422, f"'{param}' is empty: send at least one text", param=param)
        if len(texts) > settings.max_inputs:
            raise APIError(
                413, f"'{param}' has {len(texts)} texts; at most {settings.max_inputs} per request", param=param
            )
        for i, text in enumerate(texts):
            where = f"{param}[{i}]" if len(texts) > 1 or param == "inputs" else param
            if not text.strip():
                raise APIError(422, f"{where} is empty or only whitespace", param=param)
            if len(text) > settings.max_input_chars:
                raise APIError(
                    413, f"{where} has {len(text)} characters; at most {settings.max_input_chars}", param=param
                )
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise APIError(422, f"{where} is not valid Unicode (it holds a lone surrogate)", param=param) from None
        return list(texts)

    async def run_batch(key: tuple, requests: list[tuple[str, str]]) -> list[Any]:
        try:
            return await batcher.submit(key, requests)
        except QueueFull as e:
            raise APIError(429, str(e), kind="rate_limit_error") from None
        except (RequestTimeout, ShuttingDown) as e:
            raise APIError(503, str(e), kind="unavailable") from None

    def input_errors(results: Sequence[Any], param: str) -> None:
        bad = [(i, r.message) for i, r in enumerate(results) if isinstance(r, InputError)]
        if bad:
            shown = "; ".join(f"{param}[{i}]: {message}" for i, message in bad[:5])
            raise APIError(422, shown + (f"; and {len(bad) - 5} more" if len(bad) > 5 else ""), param=param)

    def count_tokens(text: str) -> int | None:
        return None if registry.base is None else len(registry.base.encode(text))

    # -- endpoints ---------------------------------------------------------------

    @app.post("/v1/classify", response_model=schemas.ClassifyResponse, responses=ERROR_RESPONSES, dependencies=auth)
    async def classify(body: schemas.ClassifyRequest) -> schemas.ClassifyResponse:
        """Label each input with the named classification prompt; inputs may be answered in a shared batch."""
        info = require_prompt(body.prompt, "prompt")
        if info.task != "classify" or not info.labels:
            raise APIError(
                422,
                f"prompt '{info.name}' is not a classification prompt (task: {info.task or 'unknown'}, no labels); "
                "use /v1/completions",
                param="prompt",
            )
        texts = check_texts(body.inputs, "inputs")
        results = await run_batch(("classify",), [(info.name, text) for text in texts])
        input_errors(results, "inputs")
        metrics.observe_inputs("/v1/classify", len(texts))
        return schemas.ClassifyResponse(
            prompt=info.name,
            results=[schemas.ClassifyResult(label=r.label, probs=dict(r.probs)) for r in results],
        )

    @app.post(
        "/v1/completions",
        response_model=schemas.CompletionResponse,
        responses={**ERROR_RESPONSES, 200: {"content": {"text/event-stream": {}}}},
        dependencies=auth,
    )
    async def completions(body: schemas.CompletionRequest):
        """OpenAI-style completions; `model` names the prompt. `stream: true` sends server-sent events."""
        info = require_prompt(body.model, "model")
        if body.n != 1:
            raise APIError(422, f"n={body.n} is not supported: only n=1", param="n")
        if not 1 <= body.max_tokens <= settings.max_tokens:
            raise APIError(
                422,
                f"max_tokens must be between 1 and {settings.max_tokens}, got {body.max_tokens}",
                param="max_tokens",
            )
        texts = check_texts([body.prompt] if isinstance(body.prompt, str) else body.prompt, "prompt")
        config = _generation_config(body)
        requests = [(info.name, text) for text in texts]
        reply = _CompletionReply(info.name, body.max_tokens, count_tokens)
        metrics.observe_inputs("/v1/completions", len(texts))
        if body.stream:
            try:
                chunks = batcher.stream(("generate", config), requests)
                first = await anext(chunks)  # queue and timeout errors still get a proper status code
            except StopAsyncIteration:
                first = None
            except QueueFull as e:
                raise APIError(429, str(e), kind="rate_limit_error") from None
            except (RequestTimeout, ShuttingDown) as e:
                raise APIError(503, str(e), kind="unavailable") from None
            if first is not None and any(isinstance(piece, InputError) for piece in first):
                await chunks.aclose()  # stops the worker's generation for this request
                input_errors(first, "prompt")
            return StreamingResponse(
                reply.events(first, chunks, len(texts)),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        results = await run_batch(("generate", config), requests)
        input_errors(results, "prompt")
        return reply.response(texts, results)

    @app.get("/v1/prompts", response_model=schemas.PromptList, responses=ERROR_RESPONSES, dependencies=auth)
    async def list_prompts() -> schemas.PromptList:
        """Every prompt being served."""
        return schemas.PromptList(data=[_describe(info) for _, info in sorted(registry.infos.items())])

    @app.get(
        "/v1/prompts/{name}", response_model=schemas.PromptDescription, responses=ERROR_RESPONSES, dependencies=auth
    )
    async def get_prompt(name: str) -> schemas.PromptDescription:
        """One prompt: task, labels, T, size."""
        return _describe(require_prompt(name, "name"))

    @app.get("/v1/models", response_model=schemas.ModelList, responses=ERROR_RESPONSES, dependencies=auth)
    async def list_models() -> schemas.ModelList:
        """The prompts as OpenAI 'models', for clients that list models first."""
        return schemas.ModelList(data=[schemas.ModelCard(id=name) for name in sorted(registry.infos)])

    @app.get("/health", response_model=schemas.Health)
    async def health() -> schemas.Health:
        """Liveness: answered by the event loop even while the model is busy."""
        return schemas.Health(
            status="draining" if draining.is_set() else "ok",
            prompts=len(registry.infos),
            queue_depth=batcher.queue_depth,
            prompt_errors=dict(registry.errors),
        )

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> PlainTextResponse:
        """Prometheus text format."""
        stats = getattr(predictor, "cache_stats", {})
        stats = stats() if callable(stats) else stats
        text = metrics.render(
            queue_depth=batcher.queue_depth, prompts_loaded=len(registry.infos), cache_stats=dict(stats or {})
        )
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    return app


def _run(predictor, key: tuple, items: list[tuple[str, str]]) -> list[Any]:
    if key[0] == "classify":
        return predictor.classify(items)
    return predictor.generate(items, key[1])


def _generation_config(body: schemas.CompletionRequest) -> GenerationConfig:
    stop = [] if body.stop is None else [body.stop] if isinstance(body.stop, str) else body.stop
    if len(stop) > MAX_STOP or any(not s for s in stop):
        raise APIError(422, f"stop takes at most {MAX_STOP} non-empty strings, got {stop!r}"[:300], param="stop")
    try:
        return GenerationConfig(
            max_new_tokens=body.max_tokens,
            temperature=body.temperature,
            top_k=body.top_k,
            top_p=body.top_p,
            seed=body.seed,
            stop=tuple(stop),
        )
    except (SoftPromptError, ValueError) as e:
        raise APIError(422, str(e)) from None


def _describe(info: PromptInfo) -> schemas.PromptDescription:
    return schemas.PromptDescription(
        name=info.name,
        task=info.task,
        labels=info.labels,
        T=info.num_virtual_tokens,
        bytes=info.bytes,
        template=info.template,
        base_model=info.base_model,
    )


class _CompletionReply:
    """Builds OpenAI-shaped completion bodies and SSE events for one request."""

    def __init__(self, model: str, max_tokens: int, count_tokens):
        self.model, self.max_tokens, self.count_tokens = model, max_tokens, count_tokens
        self.id, self.created = f"cmpl-{uuid.uuid4().hex}", int(time.time())

    def _finish(self, text: str) -> str:
        n = self.count_tokens(text)
        return "length" if n is not None and n >= self.max_tokens else "stop"

    def response(self, texts: list[str], outputs: list[str]) -> schemas.CompletionResponse:
        usage = None
        counts_in = [self.count_tokens(t) for t in texts]
        counts_out = [self.count_tokens(o) for o in outputs]
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


# -- auth, errors, observation ---------------------------------------------------------


def _api_key_check(api_key: str):
    bearer = HTTPBearer(auto_error=False, description="the server's --api-key")

    # A default rather than Annotated[...]: the annotation is a string here and could not see `bearer`.
    async def check(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # noqa: B008
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise APIError(401, "missing API key: send 'Authorization: Bearer <key>'", kind="authentication_error")
        if not hmac.compare_digest(credentials.credentials.encode(), api_key.encode()):
            raise APIError(401, "wrong API key", kind="authentication_error")

    return check


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, e: APIError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if e.status == 401 else None
        return error_response(e.status, e.message, param=e.param, kind=e.kind, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError) -> JSONResponse:
        errors = e.errors()
        if any(err.get("type") == "json_invalid" for err in errors):
            detail = next(err for err in errors if err.get("type") == "json_invalid")
            reason = (detail.get("ctx") or {}).get("error", "")
            return error_response(400, f"the request body is not valid JSON{f': {reason}' if reason else ''}")
        body_only = [err for err in errors if tuple(err.get("loc", ())) == ("body",)]
        content_type = request.headers.get("content-type", "")
        if body_only and "json" not in content_type:
            return error_response(
                400,
                f"the request body must be a JSON object sent with 'Content-Type: application/json' "
                f"(got {content_type[:100] or 'no Content-Type'!r})",
            )
        parts, params = [], []
        for err in errors[:5]:
            loc = [str(x) for x in err.get("loc", ()) if x != "body"]
            params.append(".".join(loc))
            parts.append(f"{'.'.join(loc) or 'body'}: {err.get('msg', 'invalid')}")
        if params and not params[0]:
            params[0] = None
        more = f"; and {len(errors) - 5} more" if len(errors) > 5 else ""
        return error_response(422, "; ".join(parts) + more, param=params[0] if params else None)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        message = e.detail if isinstance(e.detail, str) else json.dumps(e.detail)
        if e.status_code == 404 and message == "Not Found":
            message = f"no endpoint {request.method} {request.url.path}; see /docs or /openapi.json"
        return error_response(e.status_code, message, headers=getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, e: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error_response(500, f"internal error ({e.__class__.__name__}); this is a bug in softprompt")


class ObserveRequests:
    """ASGI middleware: refuse oversized bodies (413) and record count, status and latency per endpoint."""

    def __init__(self, app, *, metrics: ServeMetrics, max_body_bytes: int):
        self.app, self.metrics, self.max_body_bytes = app, metrics, max_body_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        recorded = False

        def endpoint() -> str:
            route = scope.get("route")
            return getattr(route, "path", None) or "unmatched"

        async def observed_send(message) -> None:
            nonlocal recorded
            if message["type"] == "http.response.start" and not recorded:
                recorded = True
                self.metrics.observe_request(endpoint(), message["status"], time.perf_counter() - start)
            await send(message)

        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            response = error_response(413, f"the request body is larger than {self.max_body_bytes} bytes")
            await response(scope, receive, observed_send)
            return
        try:
            await self.app(scope, receive, observed_send)
        finally:
            if not recorded:
                self.metrics.observe_request(endpoint(), 500, time.perf_counter() - start)
