"""The kinds of model work the server queues: one small frozen class each.

An operation is what the batcher runs on its worker thread for a list of
items. Requests with equal operations may share a call:

- `Classify`: label + probabilities per (prompt name, text); rows with
  different prompts share a forward pass. Checks `cancelled()` between
  chunks of rows.
- `Generate`: a completion per `Prompted` item. With the server's engine
  (continuous batching), `join` turns each item into an engine `Sequence`
  that joins the running batch at the next step, whatever its prompt,
  sampling settings or limits; the batcher then hands the engine's `Delta`s
  back per step. Without an engine (encoder-decoder models), `stream`/`run`
  decode the items as one fixed batch through the predictor, and only
  requests with equal settings share it.

Every path gives the same shapes: per step a list with, per item, a Delta,
an InputError (the item cannot be answered; sent first) or None (nothing new);
`gather` folds those into one `Completion` per item.

A new kind of work (say, embeddings) is a new class here with `run` (and
`stream` or `join` if it generates); the batcher does not change.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from ..decode import eos_token_ids
from ..engine import Delta, Engine, TokenLogprob
from ..engine import Sequence as Row
from ..errors import SoftPromptError
from ..infer import ClassifyResult, GenerationConfig, InputError
from .batcher import Cancelled

Item = tuple[str | None, str]  # (prompt name, text)
Step = list[Delta | InputError | None]  # one step's news, per item


@dataclass(frozen=True)
class Classify:
    """Label + probabilities per item, `rows_per_call` items per predictor call."""

    rows_per_call: int = 32

    def run(self, predictor, items: list[Item], cancelled: Cancelled) -> list[ClassifyResult | InputError | None]:
        results: list[ClassifyResult | InputError | None] = [None] * len(items)
        # Similar lengths together, so each call pads little (the predictor sorts within a call too).
        order = sorted(range(len(items)), key=lambda i: len(items[i][1]))
        for start in range(0, len(order), self.rows_per_call):
            if cancelled():
                break  # nobody reads these results any more
            chunk = order[start : start + self.rows_per_call]
            for i, result in zip(chunk, predictor.classify([items[i] for i in chunk])):
                results[i] = result
        return results


@dataclass(frozen=True)
class Prompted:
    """One text to complete: with prompt `prompt` (None: the bare base model), its own sampling seed."""

    prompt: str | None
    text: str | tuple[int, ...]  # a text, or token ids taken verbatim
    seed: int | None = None  # None: the request's seed (GenerationConfig.seed)


@dataclass
class Completion:
    """Everything one item produced."""

    text: str = ""
    tokens: list[TokenLogprob] = field(default_factory=list)  # generated tokens (with log-probs when asked)
    prompt: list[TokenLogprob] | None = None  # the input tokens' log-probs (echo)
    finish: str | None = None  # "stop" or "length" (None: not known, without the engine)
    input_ids: list[int] | None = None  # what the model saw after the prompt's virtual tokens
    virtual_tokens: int = 0

    def add(self, delta: Delta) -> None:
        self.text += delta.text
        self.tokens += delta.tokens
        self.prompt = delta.prompt if delta.prompt is not None else self.prompt
        self.finish = delta.finish or self.finish
        if delta.input_ids is not None:
            self.input_ids, self.virtual_tokens = delta.input_ids, delta.virtual_tokens


@dataclass(frozen=True)
class Generate:
    """A completion per `Prompted` item; the settings are the request's, the same for its items."""

    config: GenerationConfig
    logprobs: int | None = None  # per generated token: its log-prob and the k most likely (engine only)
    echo: bool = False  # with logprobs: the input tokens' log-probs too (engine only)
    template: bool = True  # texts go into their prompt's template; False: verbatim
    limit: int | None = None  # new tokens per item if not config.max_new_tokens (0: only score the input)

    # -- continuous batching: rows join the engine ----------------------------------------

    def join(self, predictor, engine: Engine, items: list[Prompted], cancelled: Cancelled):
        """Add one engine row per item; (the rows, None where an item has none; the chunk to send at once)."""
        rows: list[Row | None] = [None] * len(items)
        first: Step = [None] * len(items)
        eos = eos_token_ids(predictor.base)
        for i, item in enumerate(items):
            try:
                state, ids, room = predictor.generation_input(item.prompt, item.text, template=self.template)
                row = Row(
                    state,
                    ids,
                    self.config,
                    min(self.config.max_new_tokens if self.limit is None else self.limit, room),
                    eos,
                    predictor.base.tokenizer,
                    seed=item.seed,
                    logprobs=self.logprobs,
                    prompt_logprobs=self.echo and self.logprobs is not None,
                    cancelled=cancelled,
                )
            except SoftPromptError as e:
                first[i] = InputError.of(e)
                continue
            try:
                engine.add(row)
            except SoftPromptError as e:  # could never fit in the key/value cache
                first[i] = InputError(str(e), status=413)
                continue
            rows[i] = row
        return rows, first

    def collect(self, chunks: list[Step], items: int) -> list[Completion | InputError]:
        """The completions of a request that was not streamed, from all its steps."""
        return gather(chunks, items)

    # -- one fixed batch through the predictor (no engine) ----------------------------------

    def stream(self, predictor, items: list[Prompted], cancelled: Cancelled) -> Iterator[Step]:
        """Per decoding step, each item's news (an InputError in the first step for a bad item)."""
        steps = predictor.stream([(item.prompt, item.text) for item in items], self.config, template=self.template)
        first = [self._first_delta(predictor, item) for item in items]
        try:
            for step in steps:
                yield [_news(p, first, i) for i, p in enumerate(step)]
                if cancelled():
                    return
        finally:
            steps.close()  # stop decoding now

    def _first_delta(self, predictor, item: Prompted) -> Delta | None:
        """What the model sees for `item` (the engine reports it itself)."""
        try:
            state, ids, _ = predictor.generation_input(item.prompt, item.text, template=self.template)
        except SoftPromptError:
            return None  # the predictor reports it
        # The prompt's prefix, as the engine counts it: its virtual tokens (and a chat prompt's system turn).
        return Delta(input_ids=ids, virtual_tokens=0 if state is None else state.width)

    def run(self, predictor, items: list[Prompted], cancelled: Cancelled) -> list[Completion | InputError]:
        return gather(self.stream(predictor, items, cancelled), len(items))


def _news(piece: str | InputError, first: list[Delta | None], i: int) -> Delta | InputError | None:
    """A predictor's step piece as news; an item's first news says what the model saw."""
    if isinstance(piece, InputError):
        return piece
    delta, first[i] = first[i], None
    if delta is None:
        return Delta(text=piece) if piece else None
    delta.text = piece
    return delta


def gather(steps: Iterator[Step] | Sequence[Step], rows: int) -> list[Completion | InputError]:
    """One Completion per item from its steps; an item's InputError wins."""
    out: list[Completion | InputError] = [Completion() for _ in range(rows)]
    for step in steps:
        for i, news in enumerate(step):
            if isinstance(news, InputError):
                out[i] = news
            elif news is not None and isinstance(out[i], Completion):
                out[i].add(news)
    return out
