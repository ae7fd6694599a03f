"""GET /health and GET /metrics: public (no API key), answered by the event loop even while the model is busy."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from .. import schemas
from ..metrics import CONTENT_TYPE
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


@router.get("/metrics", response_class=Response)
async def prometheus(state: State) -> Response:
    """Prometheus text format (prometheus_client)."""
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)
