"""GET /v1/prompts, /v1/prompts/{name}, /v1/models, /v1/models/{id}: what is being served.

As OpenAI "models", every prompt is listed, and the base model itself under its id
(`model` = that id runs no prompt at all: the bare model, for comparison); a
prompt's card names the base model as its `parent`.
"""

from __future__ import annotations

from fastapi import APIRouter

from .. import schemas
from ..checks import require_prompt
from ..errors import ERROR_RESPONSES
from ..registry import PromptInfo
from ..sampling import require_model
from ..state import ServeState, State

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
    """The base model and the prompts as OpenAI 'models', for clients that list models first."""
    names = sorted(state.registry.infos)
    base = [] if state.base_id in state.registry.infos else [_card(state, None)]
    return schemas.ModelList(data=base + [_card(state, name) for name in names])


@router.get("/v1/models/{model_id:path}", response_model=schemas.ModelCard, responses=ERROR_RESPONSES)
async def get_model(model_id: str, state: State) -> schemas.ModelCard:
    """One model: a prompt, or the base model."""
    return _card(state, require_model(state, model_id))


def _card(state: ServeState, name: str | None) -> schemas.ModelCard:
    quantization = str(state.base.quantization) if state.base is not None else None
    if name is None:
        return schemas.ModelCard(id=state.base_id, root=state.base_id, quantization=quantization)
    return schemas.ModelCard(id=name, root=state.base_id, parent=state.base_id, quantization=quantization)


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
