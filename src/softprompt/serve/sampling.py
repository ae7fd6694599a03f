"""From an OpenAI-shaped request to model work: which prompt, which settings, which items; what is refused.

Shared by /v1/completions and /v1/chat/completions. The `model` field names a
prompt, or the base model's id for no prompt at all (a prompt folder of that
name hides it). Anything a request asks that the server does not do is refused
with 422 naming the field, rather than ignored: penalties, `logit_bias`,
`suffix`, `best_of` other than `n`, tools, and (for models the engine cannot
run, the encoder-decoders) `n` > 1, `logprobs` and `echo`.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..decode import GenerationConfig
from ..errors import SoftPromptError
from .checks import require_prompt
from .errors import APIError
from .operations import Prompted
from .schemas import Sampling
from .state import ServeState

MAX_STOP = 4  # as OpenAI


def require_model(state: ServeState, model: str) -> str | None:
    """The prompt `model` names, or None for the base model's id (404 for anything else)."""
    if model == state.base_id and state.registry.get(model) is None:
        return None
    return require_prompt(state, model, "model").name


def refuse_unsupported(state: ServeState, body: Sampling, *, logprobs: bool, echo: bool = False) -> None:
    """422 for what the request asks that the server does not do."""
    for field in ("presence_penalty", "frequency_penalty"):
        if getattr(body, field):
            raise APIError(422, f"{field} is not supported: leave it out or send 0", param=field)
    if body.logit_bias:
        raise APIError(422, "logit_bias is not supported: leave it out", param="logit_bias")
    if state.batcher.stepper is None:  # no engine: one fixed batch through the predictor
        for asked, field in ((body.n > 1, "n"), (logprobs, "logprobs"), (echo, "echo")):
            if asked:
                raise APIError(
                    422, f"{field} is not supported for model '{state.base_id}' (an encoder-decoder)", param=field
                )


def check_max_tokens(state: ServeState, max_tokens: int, *, allow_zero: bool = False) -> None:
    low = 0 if allow_zero else 1
    if not low <= max_tokens <= state.settings.max_tokens:
        raise APIError(
            422,
            f"max_tokens must be between {low} and {state.settings.max_tokens}, got {max_tokens}"
            + ("" if allow_zero else " (0 only with echo)"),
            param="max_tokens",
        )


def generation_config(body: Sampling, max_tokens: int) -> GenerationConfig:
    stop = [] if body.stop is None else [body.stop] if isinstance(body.stop, str) else body.stop
    if len(stop) > MAX_STOP or any(not s for s in stop):
        raise APIError(422, f"stop takes at most {MAX_STOP} non-empty strings, got {stop!r}"[:300], param="stop")
    try:
        # max_tokens 0 (echo only) still needs a valid config: the engine row's own limit is 0.
        return GenerationConfig.from_options(body, max_new_tokens=max(max_tokens, 1))
    except (SoftPromptError, ValueError) as e:
        raise APIError(422, str(e)) from None


def choices(prompt: str | None, texts: Sequence[str | tuple[int, ...]], n: int, seed: int | None) -> list[Prompted]:
    """n items per text (choice index = text index * n + j); choice j samples with seed + j."""
    return [Prompted(prompt, text, None if seed is None else seed + j) for text in texts for j in range(n)]
