"""Request and response bodies of the HTTP API (pydantic), published in /openapi.json.

`/v1/completions` and `/v1/chat/completions` follow OpenAI's API (model = a
prompt's name, or the base model's id) so OpenAI clients work unchanged. A
field we do not implement is refused (422), never silently ignored: unknown
fields, `suffix`, non-zero penalties, `logit_bias`, `best_of` other than `n`,
tools. Limits that depend on the server's settings (number and length of
inputs, max_tokens) are checked in the handlers, which answer 413/422 with a
message.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# New tokens per choice when a request names none: OpenAI's completions default, used by chat too.
DEFAULT_MAX_TOKENS = 16


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: int
    param: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class ClassifyRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"prompt": "sentiment", "inputs": ["A warm, funny film."]}]}
    )
    prompt: str = Field(description="name of a classification prompt (a folder under --prompts)", max_length=256)
    inputs: list[str] = Field(description="texts to classify; the prompt's template is applied to each")


class ClassifyResult(BaseModel):
    label: str
    probs: dict[str, float] = Field(description="probability of each label (sums to 1)")


class ClassifyResponse(BaseModel):
    object: Literal["classification"] = "classification"
    prompt: str
    results: list[ClassifyResult]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = Field(False, description="send a last chunk with the usage (and no choices)")


class Sampling(BaseModel):
    """Fields completions and chat share. Unknown fields are refused (422): nothing is silently ignored."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(description="a prompt's name (a folder under --prompts), or the base model's id: no prompt")
    temperature: float = Field(1.0, ge=0.0, le=2.0, description="0 = greedy")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0, description="extension: keep the k most likely tokens (0 = all)")
    stop: str | list[str] | None = Field(None, description="up to 4 strings that end a completion")
    seed: int | None = Field(None, ge=0, lt=2**62, description="choice j of a request samples with seed + j")
    stream: bool = Field(False, description="send server-sent events, ending with `data: [DONE]`")
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=16, description="choices per prompt")
    presence_penalty: float = Field(0.0, description="not supported: only 0")
    frequency_penalty: float = Field(0.0, description="not supported: only 0")
    logit_bias: dict[str, float] | None = Field(None, description="not supported: only empty")
    user: str | None = Field(None, max_length=256, description="accepted and not used")


class CompletionRequest(Sampling):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"model": "summarize", "prompt": "Once upon a time", "max_tokens": 8}]},
    )
    prompt: str | list[str] | list[int] | list[list[int]] = Field(
        description="a text, texts, or token ids (taken verbatim: no template) to complete"
    )
    max_tokens: int = Field(
        DEFAULT_MAX_TOKENS, description="new tokens per choice (at most --max-tokens; 0 only with echo)"
    )
    logprobs: int | None = Field(None, ge=0, le=20, description="log-probs of each token and of the k most likely")
    echo: bool = Field(False, description="return the prompt before the completion (its log-probs with logprobs)")
    best_of: int | None = Field(None, description="only n (or unset): no choices are computed and dropped")
    suffix: str | None = Field(None, description="not supported")
    template: bool = Field(
        True, description="extension: put a text into the prompt's template; false sends it as it is"
    )


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None
    name: str | None = Field(None, max_length=64)


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str


class ChatRequest(Sampling):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"model": "assistant", "messages": [{"role": "user", "content": "Hello"}]}]},
    )
    messages: list[ChatMessage] = Field(description="the conversation, rendered with the base model's chat template")
    max_tokens: int | None = Field(
        None, description=f"new tokens per choice (default {DEFAULT_MAX_TOKENS}; at most --max-tokens)"
    )
    max_completion_tokens: int | None = Field(None, description="the same as max_tokens (the newer name)")
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20, description="with logprobs: the k most likely tokens")
    response_format: dict | None = Field(None, description='only {"type": "text"}')
    tools: list | None = Field(None, description="not supported")
    tool_choice: str | dict | None = Field(None, description='not supported (only "none")')


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]


class CompletionChoice(BaseModel):
    text: str
    index: int
    logprobs: CompletionLogprobs | None = None
    finish_reason: Literal["stop", "length"] | None


class Usage(BaseModel):
    prompt_tokens: int = Field(description="tokens the model saw before generating: virtual, template and input")
    completion_tokens: int
    total_tokens: int
    virtual_tokens: int = Field(0, description="extension: the soft prompt's virtual tokens in prompt_tokens")


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int]


class TokenLogprobEntry(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChatLogprobs(BaseModel):
    content: list[TokenLogprobEntry]


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: ChatLogprobs | None = None
    finish_reason: Literal["stop", "length"] | None


class ChatResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage | None = None


class PromptDescription(BaseModel):
    name: str
    task: str | None = Field(description="classify or generate (None if the file does not say)")
    labels: list[str] | None
    T: int = Field(description="number of virtual tokens")
    bytes: int = Field(description="size of the prompt folder on disk")
    template: str | None = None
    base_model: str | None = None
    method: str = Field("prompt", description="prompt (input vectors) or prefix (keys/values in every layer)")


class PromptList(BaseModel):
    object: Literal["list"] = "list"
    data: list[PromptDescription]


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "softprompt"
    root: str | None = Field(None, description="the base model every prompt runs on")
    parent: str | None = Field(None, description="a prompt's base model (None: this is the base model)")
    quantization: str | None = Field(
        None,
        description="the precision the base model's weights are held in: none, int8, int4, int4/64 ... (--quantize)",
    )


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Health(BaseModel):
    status: Literal["ok", "draining"]
    prompts: int
    queue_depth: int
    prompt_errors: dict[str, str] = Field(description="prompt folders that could not be loaded, and why")
