"""The HTTP API: `create_app(predictor, registry, settings)` -> a FastAPI app.

Endpoints (routes/, one module per group): POST /v1/classify, POST
/v1/completions (OpenAI-shaped, with SSE streaming), GET /v1/prompts[/{name}],
GET /v1/models, GET /health, GET /metrics; the schema is at /openapi.json.
Errors and their codes: errors.py.

A request passes, in order: ObserveRequests (metrics) -> HostCheck (421) ->
RequireApiKey (401) -> RequireJson (415) -> LimitBody (413 while the body
streams) -> FastAPI's validation (400/422) -> the endpoint, which checks the
prompt and the limits (404/413/422) and hands an operation to the batcher
(429/503). The first four answer before any of the body is read.

The model runs on the batcher's worker thread; the prompt folder is re-scanned
on that same thread every `poll_interval_s`, between batches, so prompt changes
never race a forward pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import Depends, FastAPI
from fastapi.security import HTTPBearer

from .. import __version__
from ..engine import Engine, engine_problem
from .batcher import Batcher
from .config import ServeSettings
from .errors import APIError, add_error_handlers
from .guards import LimitBody, RequireApiKey, RequireJson
from .hosts import HostCheck
from .metrics import ServeMetrics
from .observe import ObserveRequests
from .registry import PromptRegistry
from .routes import API, PUBLIC
from .state import ServeState

__all__ = ["APIError", "create_app"]  # APIError: the studio's endpoints raise it too

log = logging.getLogger("softprompt.serve")


def create_app(predictor, registry: PromptRegistry, settings: ServeSettings | None = None) -> FastAPI:
    """A FastAPI app serving `registry`'s prompts with `predictor` (an infer.Predictor or look-alike)."""
    settings = settings or ServeSettings()
    metrics = ServeMetrics()
    batcher = Batcher(
        predictor,
        max_batch_size=settings.max_batch_size,
        max_queue=settings.max_queue,
        timeout_s=settings.timeout_s,
        batch_wait_s=settings.batch_wait_s,
        on_batch=metrics.observe_batch,
        stepper=_engine(registry.base or getattr(predictor, "base", None), settings),
        scheduler=settings.scheduler,
    )
    state = ServeState(predictor, registry, settings, batcher, metrics)
    metrics.read(lambda: _scraped(state))

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
        state.draining = True
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
    app.state.serve, app.state.settings = state, settings
    app.state.batcher, app.state.metrics, app.state.registry = batcher, metrics, registry
    # Added innermost first: the last added runs first.
    app.add_middleware(LimitBody, max_bytes=settings.max_body_bytes, on_bytes=metrics.observe_body)
    app.add_middleware(RequireJson, prefixes=settings.json_post_prefixes)
    if settings.api_key:
        app.add_middleware(RequireApiKey, api_key=settings.api_key)
    app.add_middleware(HostCheck, allowed=settings.allowed_hosts)
    app.add_middleware(ObserveRequests, metrics=metrics)
    add_error_handlers(app)
    # RequireApiKey checks the key before the body is read; this only declares the scheme in /openapi.json.
    documented = [Depends(HTTPBearer(auto_error=False, description="the server's --api-key"))]
    for router in API:
        app.include_router(router, dependencies=documented if settings.api_key else [])
    for router in PUBLIC:
        app.include_router(router)
    return app


def _scraped(state: ServeState) -> dict[str, float]:
    """What /metrics reads from elsewhere at each scrape (metrics.py names them)."""
    stats = getattr(state.predictor, "cache_stats", {})
    stats = stats() if callable(stats) else stats or {}
    values = {"queue_depth": state.batcher.queue_depth, "prompts_loaded": len(state.registry.infos)}
    values.update({f"cache_{key}": value for key, value in stats.items()})
    engine = state.batcher.stepper
    if isinstance(engine, Engine):
        values.update(
            engine_rows_decoding=engine.decoding,
            engine_rows_prefilling=len(engine.rows) - engine.decoding,
            engine_rows_waiting=len(engine.waiting),
            engine_kv_cache_bytes=engine.cache.nbytes,
            engine_kv_cache_max_bytes=engine.cache.max_bytes,
        )
    return values


def _engine(base, settings: ServeSettings) -> Engine | None:
    """The generation engine, or None for a model it cannot run (completions then decode as one fixed batch)."""
    problem = None if base is None else engine_problem(base)
    if base is None or problem:
        if problem:
            log.info("completions without continuous batching: %s", problem)
        return None
    return Engine(
        base,
        max_rows=settings.max_batch_size,
        max_kv_bytes=settings.kv_cache_bytes,
        step_tokens=settings.step_tokens,
    )
