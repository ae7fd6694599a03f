"""POST /v1/chat/completions: OpenAI's chat completions, whole or streamed.

How a chat meets a soft prompt depends on the format the prompt was trained on
(docs/chat.md):

- a chat prompt (task `chat` or `chat_classify`): the conversation goes to the
  prompt's task, which renders it exactly as training did (tasks/chat.py), the
  prompt's virtual tokens in front of everything;
- a prompt trained on a text template (`classify`, `generate`): the one user
  message is put into the prompt's own template, as completions would; any
  other conversation is refused with a 422 saying why (measured: the template
  beats the chat template by far for such prompts, benchmarks/results/chat/);
- the base model, or a prompt without a task (a PEFT file): the base model's
  chat template renders the messages, the prompt's virtual tokens in front.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request

from ...errors import SoftPromptError
from .. import schemas
from ..checks import check_texts
from ..errors import ERROR_RESPONSES, APIError
from ..operations import Generate
from ..replies import ChatReply, respond
from ..sampling import check_max_tokens, choices, generation_config, refuse_unsupported, require_model
from ..state import ServeState, State

router = APIRouter()


@router.post(
    "/v1/chat/completions",
    response_model=schemas.ChatResponse,
    responses={**ERROR_RESPONSES, 200: {"content": {"text/event-stream": {}}}},
)
async def chat(body: schemas.ChatRequest, state: State, request: Request):
    """OpenAI-style chat; `model` names the prompt (or the base model). `stream: true` sends server-sent events."""
    name = require_model(state, body.model)
    refuse_unsupported(state, body, logprobs=body.logprobs)
    if body.tools or body.tool_choice not in (None, "none"):
        raise APIError(422, "tools are not supported: leave tools and tool_choice out", param="tools")
    if body.response_format is not None and body.response_format.get("type") != "text":
        raise APIError(422, 'response_format: only {"type": "text"} is supported', param="response_format")
    if body.top_logprobs is not None and not body.logprobs:
        raise APIError(422, "top_logprobs needs logprobs: true", param="top_logprobs")
    max_tokens = next(
        (m for m in (body.max_completion_tokens, body.max_tokens) if m is not None), schemas.DEFAULT_MAX_TOKENS
    )
    check_max_tokens(state, max_tokens)
    text, template = await asyncio.to_thread(chat_input, state, name, body.messages)
    texts = await check_texts(state, [text], "messages", new_tokens=max_tokens * body.n)
    operation = Generate(
        generation_config(body, max_tokens),
        logprobs=(body.top_logprobs or 0) if body.logprobs else None,
        template=template,
    )
    items = choices(name, texts, body.n, body.seed)
    reply = ChatReply(
        body.model,
        getattr(state.base, "tokenizer", None),
        n=body.n,
        max_tokens=max_tokens,
        include_usage=bool(body.stream_options and body.stream_options.include_usage),
        count_tokens=state.count_tokens,
        logprobs=body.logprobs,
    )
    state.metrics.observe_inputs("/v1/chat/completions", 1)
    return await respond(state, request, operation, items, reply, stream=body.stream, param="messages")


def chat_input(state: ServeState, name: str | None, messages: list[schemas.ChatMessage]) -> tuple[str, bool]:
    """(the text the predictor gets, whether it goes into the prompt's task) for a conversation to `name`."""
    if not messages:
        raise APIError(422, "'messages' is empty: send at least one message", param="messages")
    task = None if name is None else getattr(state.predictor, "task", lambda _: None)(name)
    if task is None:
        return render(state, messages), False
    turns = [{"role": _role(m.role), "content": _content(m.content)} for m in messages]
    if task.format == "chat":
        from ...data.messages import messages_text

        try:
            task.check_system(turns)
        except SoftPromptError as e:
            raise APIError(422, f"prompt '{name}': {e}", param="messages") from None
        return messages_text(turns), True
    if len(turns) != 1 or turns[0]["role"] != "user":
        raise APIError(
            422,
            f"prompt '{name}' was trained on the text template {task.template!r}, not on conversations: send "
            "one user message, which goes into that template (or train a chat prompt: --task chat)",
            param="messages",
        )
    return turns[0]["content"], True


def render(state: ServeState, messages: list[schemas.ChatMessage]) -> str:
    """The conversation as text, by the base model's chat template, ending where the assistant's reply starts."""
    tokenizer = getattr(state.base, "tokenizer", None)
    if not messages:
        raise APIError(422, "'messages' is empty: send at least one message", param="messages")
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise APIError(
            422,
            f"model '{state.base_id}' has no chat template; use /v1/completions with your own formatting",
            param="model",
        )
    turns = [{"role": _role(m.role), "content": _content(m.content)} for m in messages]
    try:
        return tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=False)
    except Exception as e:  # noqa: BLE001 -- a template may refuse a conversation (e.g. roles out of order)
        raise APIError(422, f"the chat template refused these messages: {e}"[:500], param="messages") from None


def _role(role: str) -> str:
    return "system" if role == "developer" else role  # templates know "system"; OpenAI renamed it for o1


def _content(content: str | list[schemas.TextPart] | None) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    return "".join(part.text for part in content)
