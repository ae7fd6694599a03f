"""POST /v1/classify: label texts with a classification prompt."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ...tasks import kind_has_labels
from .. import schemas
from ..checks import check_texts, input_errors, require_prompt
from ..dispatch import answer
from ..errors import ERROR_RESPONSES, APIError
from ..operations import Classify
from ..state import State

router = APIRouter()


@router.post("/v1/classify", response_model=schemas.ClassifyResponse, responses=ERROR_RESPONSES)
async def classify(body: schemas.ClassifyRequest, state: State, request: Request) -> schemas.ClassifyResponse:
    """Label each input with the named classification prompt; inputs may be answered in a shared batch."""
    info = require_prompt(state, body.prompt, "prompt")
    if not kind_has_labels(info.task) or not info.labels:
        raise APIError(
            422,
            f"prompt '{info.name}' is not a classification prompt (task: {info.task or 'unknown'}, no labels); "
            "use /v1/completions",
            param="prompt",
        )
    texts = await check_texts(state, body.inputs, "inputs")
    operation = Classify(rows_per_call=state.settings.max_batch_size)
    results = await answer(state, request, operation, [(info.name, text) for text in texts])
    input_errors(results, "inputs")
    state.metrics.observe_inputs("/v1/classify", len(texts))
    return schemas.ClassifyResponse(
        prompt=info.name,
        results=[schemas.ClassifyResult(label=r.label, probs=dict(r.probs)) for r in results],
    )
