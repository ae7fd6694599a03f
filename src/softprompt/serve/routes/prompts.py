"""GET /v1/prompts, /v1/prompts/{name}, /v1/models: what is being served."""

from __future__ import annotations

from fastapi import APIRouter

from .. import schemas
from ..checks import require_prompt
from ..errors import ERROR_RESPONSES
from ..registry import PromptInfo
from ..state import State

router = APIRouter()


@router.get("/v1/prompts", response_model=schemas.PromptList, responses=ERROR_RESPONSES)
async def list_prompts(state: State) -> schemas.PromptList:
    """Every prompt being served."""
    return schemas.PromptList(data=[_describe(info) for _, info in sorted(state.registry.infos.items())])


@router.get("/v1/prompts/{name}", response_model=schemas.PromptDescription, responses=ERROR_RESPONSES)
async def get_prompt(name: str, state: State) -> schemas.PromptDescription:
    """One prompt: task, labels, T, size."""
    return _describe(require_prompt(state, name, "name"))


@router.get("/v1/models", response_model=schemas.ModelList, responses=ERROR_RESPONSES)
async def list_models(state: State) -> schemas.ModelList:
    """The prompts as OpenAI 'models', for clients that list models first."""
    return schemas.ModelList(data=[schemas.ModelCard(id=name) for name in sorted(state.registry.infos)])


def _describe(info: PromptInfo) -> schemas.PromptDescription:
    return schemas.PromptDescription(
        name=info.name,
        task=info.task,
        labels=info.labels,
        T=info.num_virtual_tokens,
        bytes=info.bytes,
        template=info.template,
        base_model=info.base_model,
        method=info.method,
    )
