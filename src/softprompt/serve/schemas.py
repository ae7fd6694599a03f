"""Request and response bodies of the HTTP API (pydantic), published in /openapi.json.

`/v1/completions` follows OpenAI's completions API (model = prompt name) so
OpenAI clients work unchanged; fields we do not implement (`logprobs`, `echo`,
`suffix`, ...) are accepted and ignored, except `n`, which must be 1.
Limits that depend on the server's settings (number and length of inputs,
max_tokens) are checked in the handlers, which answer 413/422 with a message.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


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


class CompletionRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"model": "summarize", "prompt": "Once upon a time", "max_tokens": 8}]}
    )
    model: str = Field(description="name of the prompt to use (a folder under --prompts)", max_length=256)
    prompt: str | list[str] = Field(description="one text or a list of texts to complete")
    max_tokens: int = Field(16, description="new tokens per text (at most the server's --max-tokens)")
    temperature: float = Field(1.0, ge=0.0, le=2.0, description="0 = greedy")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0, description="extension: keep the k most likely tokens (0 = all)")
    stop: str | list[str] | None = Field(None, description="up to 4 strings that end a completion")
    seed: int | None = Field(None, ge=0, lt=2**63)
    stream: bool = Field(False, description="send the text as server-sent events, ending with `data: [DONE]`")
    n: int = Field(1, description="completions per text: only 1 is supported")


class CompletionChoice(BaseModel):
    text: str
    index: int
    logprobs: None = None
    finish_reason: Literal["stop", "length"] | None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
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


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Health(BaseModel):
    status: Literal["ok", "draining"]
    prompts: int
    queue_depth: int
    prompt_errors: dict[str, str] = Field(description="prompt folders that could not be loaded, and why")
