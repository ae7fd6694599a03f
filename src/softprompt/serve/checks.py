"""Checks of a request's contents against the served prompts and the limits; each failure is an APIError."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from ..infer import InputError
from .errors import APIError
from .registry import PromptInfo, name_problem
from .state import ServeState


def require_prompt(state: ServeState, name: str, param: str) -> PromptInfo:
    info = None if name_problem(name) else state.registry.get(name)
    if info is None:
        names = sorted(state.registry.infos)
        shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
        raise APIError(
            404,
            f"no prompt named {name[:128]!r}; available: {shown or 'none'} (GET /v1/prompts lists them)",
            param=param,
            kind="not_found_error",
        )
    return info


async def check_texts(
    state: ServeState, texts: Sequence[str | Sequence[int]], param: str, *, new_tokens: int = 0
) -> list[str | tuple[int, ...]]:
    """The texts (token-id lists as tuples), if each is non-empty and within the character and token limits, and
    the request within its token budget (`new_tokens` per text counts what a completion may generate)."""
    limits = state.settings
    if not texts:
        raise APIError(422, f"'{param}' is empty: send at least one text", param=param)
    if len(texts) > limits.max_inputs:
        raise APIError(413, f"'{param}' has {len(texts)} texts; at most {limits.max_inputs} per request", param=param)
    where = [f"{param}[{i}]" if len(texts) > 1 or param == "inputs" else param for i in range(len(texts))]
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            if not text:
                raise APIError(422, f"{where[i]} is an empty list of token ids", param=param)
            continue
        if not text.strip():
            raise APIError(422, f"{where[i]} is empty or only whitespace", param=param)
        if len(text) > limits.max_input_chars:  # before tokenising: bounds the tokeniser's work too
            raise APIError(413, f"{where[i]} has {len(text)} characters; at most {limits.max_input_chars}", param=param)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise APIError(422, f"{where[i]} is not valid Unicode (it holds a lone surrogate)", param=param) from None
    texts = [text if isinstance(text, str) else tuple(text) for text in texts]
    if state.base is None:
        return texts
    count = lambda text: state.count_tokens(text) if isinstance(text, str) else len(text)
    counts = await asyncio.to_thread(lambda: [count(text) for text in texts])  # off the event loop
    for i, n in enumerate(counts):
        if n > limits.max_input_tokens:
            raise APIError(
                413,
                f"{where[i]} has {n} tokens; at most {limits.max_input_tokens} (--max-input-tokens)",
                param=param,
            )
    total = sum(counts) + new_tokens * len(texts)
    if total > limits.max_request_tokens:
        extra = f" + {new_tokens} new tokens x {len(texts)} texts" if new_tokens else ""
        raise APIError(
            413,
            f"the request needs {total} tokens ({sum(counts)} in '{param}'{extra}); at most "
            f"{limits.max_request_tokens} per request (--max-request-tokens): send fewer or shorter texts",
            param=param,
        )
    return texts


def input_errors(results: Sequence[Any], param: str) -> None:
    """422 naming each input the predictor could not answer (too long for the context, ...)."""
    bad = [(i, r) for i, r in enumerate(results) if isinstance(r, InputError)]
    if bad:
        shown = "; ".join(f"{param}[{i}]: {error.message}" for i, error in bad[:5])
        status = max(error.status for _, error in bad)  # 413 (over a server limit) before 422
        raise APIError(status, shown + (f"; and {len(bad) - 5} more" if len(bad) > 5 else ""), param=param)
