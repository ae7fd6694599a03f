"""GET /health and GET /metrics: public (no API key), answered by the event loop even while the model is busy."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from .. import schemas
from ..state import State

router = APIRouter()


@router.get("/health", response_model=schemas.Health)
async def health(state: State) -> schemas.Health:
    """Liveness, prompts served, queue depth, and the prompt folders that could not be loaded (paths relative to
    the prompts folder)."""
    return schemas.Health(
        status="draining" if state.draining else "ok",
        prompts=len(state.registry.infos),
        queue_depth=state.batcher.queue_depth,
        prompt_errors=dict(state.registry.errors),
    )


@router.get("/metrics", response_class=PlainTextResponse)
async def prometheus(state: State) -> PlainTextResponse:
    """Prometheus text format."""
    stats = getattr(state.predictor, "cache_stats", {})
    stats = stats() if callable(stats) else stats
    text = state.metrics.render(
        queue_depth=state.batcher.queue_depth, prompts_loaded=len(state.registry.infos), cache_stats=dict(stats or {})
    )
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")
