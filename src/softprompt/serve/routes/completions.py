"""POST /v1/completions: OpenAI's completions (`model` = a prompt, or the base model), whole or streamed.

The template rule: a text `prompt` goes into the named prompt's template (what
the prompt was trained on), unless the request says `"template": false`; a
prompt given as token ids is taken verbatim, and so is every text sent to the
base model. `echo` returns the input as the model saw it (template included).
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from .. import schemas
from ..checks import check_texts
from ..errors import ERROR_RESPONSES, APIError
from ..operations import Generate
from ..replies import CompletionReply, respond
from ..sampling import check_max_tokens, choices, generation_config, refuse_unsupported, require_model
from ..state import State

router = APIRouter()


@router.post(
    "/v1/completions",
    response_model=schemas.CompletionResponse,
    responses={**ERROR_RESPONSES, 200: {"content": {"text/event-stream": {}}}},
)
async def completions(body: schemas.CompletionRequest, state: State, request: Request):
    """OpenAI-style completions; `model` names the prompt. `stream: true` sends server-sent events."""
    name = require_model(state, body.model)
    refuse_unsupported(state, body, logprobs=body.logprobs is not None, echo=body.echo)
    if body.suffix is not None:
        raise APIError(422, "suffix is not supported: leave it out", param="suffix")
    if body.best_of is not None and body.best_of != body.n:
        raise APIError(422, f"best_of must equal n ({body.n}): no choices are computed and dropped", param="best_of")
    check_max_tokens(state, body.max_tokens, allow_zero=body.echo)
    if isinstance(body.prompt, str):
        prompts = [body.prompt]
    elif body.prompt and all(isinstance(token, int) for token in body.prompt):
        prompts = [body.prompt]  # one prompt as token ids
    else:
        prompts = body.prompt
    texts = await check_texts(state, prompts, "prompt", new_tokens=body.max_tokens * body.n)
    operation = Generate(
        generation_config(body, body.max_tokens),
        logprobs=body.logprobs,
        echo=body.echo,
        template=body.template,
        limit=body.max_tokens,
    )
    items = choices(name, texts, body.n, body.seed)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    reply = CompletionReply(
        body.model,
        getattr(state.base, "tokenizer", None),
        n=body.n,
        max_tokens=body.max_tokens,
        include_usage=include_usage,
        count_tokens=state.count_tokens,
        echo=body.echo,
        logprobs=body.logprobs is not None,
    )
    state.metrics.observe_inputs("/v1/completions", len(texts))
    return await respond(state, request, operation, items, reply, stream=body.stream, param="prompt")
