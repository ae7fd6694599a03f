"""The kinds of model work the server queues: one small frozen class each.

An operation is what the batcher runs on its worker thread for a list of
(prompt name, text) items. Requests with equal operations share a call:
`Classify` requests always can (rows with different prompts share a forward
pass), `Generate` requests when their sampling settings are equal. Each
checks `cancelled()` between batches of rows (classification) or between
decoding steps (generation), so work nobody waits for any more (timed out,
client gone) stops within one batch or one token.

A new kind of work (say, log-probabilities of a text) is a new class here
with `run` (and `stream` if it can be streamed); the batcher does not change.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ..infer import ClassifyResult, GenerationConfig, InputError
from .batcher import Cancelled

Item = tuple[str | None, str]  # (prompt name, text)


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
class Generate:
    """Generated text per item, with one GenerationConfig for every row of the call."""

    config: GenerationConfig

    def stream(self, predictor, items: list[Item], cancelled: Cancelled) -> Iterator[list[str | InputError]]:
        """Per decoding step, each row's new text piece (an InputError in the first step for a bad row)."""
        steps = predictor.stream(items, self.config)
        try:
            for step in steps:
                yield step
                if cancelled():
                    return
        finally:
            steps.close()  # stop decoding now

    def run(self, predictor, items: list[Item], cancelled: Cancelled) -> list[str | InputError]:
        return join_steps(self.stream(predictor, items, cancelled), len(items))


def join_steps(steps: Iterator[Sequence[str | InputError]], rows: int) -> list[str | InputError]:
    """The whole text of each row from its streamed pieces; a row's InputError wins over its text."""
    texts: list[str | InputError] = [""] * rows
    for step in steps:
        for i, piece in enumerate(step):
            if isinstance(piece, InputError):
                texts[i] = piece
            elif isinstance(texts[i], str):
                texts[i] += piece
    return texts
