"""POST /studio/api/hard: the same text with a typed hard prompt, to set beside the soft prompt's answer."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from ...errors import SoftPromptError
from ...infer import GenerationConfig, InputError
from ...serve.app import APIError
from ...serve.operations import Generate, Prompted
from ...tasks import kind_has_labels
from ..guard import require_json
from ..operations import ClassifyHard
from ..state import Studio

MAX_TEXT_CHARS = 4000
HARD_MAX_TOKENS = 64

router = APIRouter()


class HardRequest(BaseModel):
    prompt: str = Field(description="the soft prompt whose task (template, labels) the hard prompt borrows")
    text: str = Field(max_length=MAX_TEXT_CHARS)
    hard_prompt: str = Field("", max_length=MAX_TEXT_CHARS, description="instruction put before the template")
    max_tokens: int = Field(40, ge=1, le=HARD_MAX_TOKENS)


@router.post("/api/hard", dependencies=[Depends(require_json)])
async def hard(body: HardRequest, state: Studio) -> dict:
    """Answer `text` with a typed hard prompt in place of the soft prompt (same template and labels)."""
    prompt = state.loaded(body.prompt)
    if not body.text.strip():
        raise APIError(422, "type a text to try", param="text")
    template = hard_template(prompt.meta.template, body.hard_prompt)
    if kind_has_labels(prompt.meta.task) and prompt.meta.verbalizer:
        try:
            (probs,) = await state.batcher.submit(ClassifyHard(prompt.meta, template), [body.text])
        except SoftPromptError as e:
            raise APIError(422, str(e)) from None
        return {"template": template, "label": max(probs, key=probs.get), "probs": probs}
    config = GenerationConfig(max_new_tokens=body.max_tokens)
    (out,) = await state.batcher.submit(Generate(config), [Prompted(None, template.replace("{text}", body.text))])
    if isinstance(out, InputError):
        raise APIError(422, out.message)
    return {"template": template, "text": out.text}


def hard_template(own: str | None, hard_prompt: str) -> str:
    """The template the hard prompt makes: itself if it holds {text} once, else it before the prompt's own."""
    template = own or "{text}"
    if hard_prompt.count("{text}") == 1:
        return hard_prompt
    if hard_prompt.strip():
        return hard_prompt.rstrip() + "\n" + template
    return template
