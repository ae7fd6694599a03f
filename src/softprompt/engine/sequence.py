"""One row of generation in the engine, and what it produces at each step.

A `Sequence` is what a request asks (its prompt's keys/values, its input ids,
how to pick tokens, how many) plus where the engine has got with it (its row
in the slot cache, how much of its input has run, the token it sampled last).
Rows of one batch differ in all of these: nothing here is shared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..decode import GenerationConfig, RowText, row_generators
from ..forward import PrefixKV

CANCELLED = "cancelled"  # finish reason of a sequence dropped because nobody waits for it any more


@dataclass(frozen=True)
class TokenLogprob:
    """A token and its log-probability under the model (None: nothing before it predicts it), with the
    `top` most likely tokens at its position when asked."""

    token: int
    logprob: float | None
    top: tuple[tuple[int, float], ...] = ()


@dataclass
class Delta:
    """What one sequence produced in one step."""

    text: str = ""  # new final text (a stop string and what follows it never appear)
    tokens: list[TokenLogprob] = field(default_factory=list)  # tokens generated this step (not EOS)
    prompt: list[TokenLogprob] | None = None  # with prompt_logprobs: every input token, in the first delta
    finish: str | None = None  # "stop" (EOS or a stop string), "length" (token limit or context), or CANCELLED
    # In the first delta: what the model saw before generating (the input's ids, the prompt's virtual tokens).
    input_ids: list[int] | None = None
    virtual_tokens: int = 0


@dataclass(eq=False)
class Sequence:
    """A generation request for the engine; `max_new_tokens` 0 only scores the input (with prompt_logprobs)."""

    prefix: PrefixKV | None  # the soft prompt's keys/values (batch 1), or None for the bare model
    ids: list[int]  # the input tokens after the prompt
    config: GenerationConfig
    max_new_tokens: int
    eos_ids: frozenset[int]
    tokenizer: object
    seed: int | None = None  # this row's sampling seed (default: config.seed)
    logprobs: int | None = None  # None: no log-probs; k: the chosen token's and the k most likely
    prompt_logprobs: bool = False  # also the log-prob of every input token (OpenAI's echo)
    cancelled: Callable[[], bool] = lambda: False
    # Where the engine has got (engine.py sets these).
    row: int = -1  # slot in the cache
    length: int = 0  # tokens in the cache
    fed: int = 0  # input tokens run so far
    pending: int | None = None  # the token sampled last, to run at the next step
    scored: list[TokenLogprob] = field(default_factory=list)  # input tokens' log-probs so far

    def __post_init__(self) -> None:
        self.text = RowText(self.tokenizer, self.config.stop, self.max_new_tokens, self.eos_ids)
        seed = self.config.seed if self.seed is None else self.seed
        self.generator: torch.Generator | None = None if self.config.greedy else row_generators([seed])[0]

    @property
    def prompt_length(self) -> int:
        return 0 if self.prefix is None else self.prefix.width

    @property
    def need(self) -> int:
        """Cache slots this sequence may use: prompt, input, new tokens, and one scratch slot for padding."""
        return self.prompt_length + len(self.ids) + self.max_new_tokens + 1

    @property
    def prefilled(self) -> bool:
        return self.fed == len(self.ids)
