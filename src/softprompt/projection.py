"""A soft prompt's readable projection, scored: how well its nearest tokens work as a hard prompt.

Each virtual token is replaced by its nearest vocabulary token (cosine similarity
in the input-embedding space, the first neighbour `inspect` lists). Those tokens
are the "gibberish" one can read off a trained prompt. Scoring them as a hard
prompt (their own input embeddings in the prompt's place, same task, same
examples) beside the soft prompt turns the interpretability question into a
number: if the projection kept the soft prompt's skill, reading it would explain
the prompt; it usually does not (Lester et al. 2021, section 7; Khashabi et al.
2022). The token ids are used as they are: decoding them to text and encoding
that again may give other tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from .evaluate import EvalRow, evaluate
from .forward import prompt_state
from .models import BaseModel
from .prompts.vocab import cosine_matrix, vocabulary_embeddings
from .tasks import Task


@dataclass
class ProjectionScore:
    token_ids: list[int]  # the nearest vocabulary token of each virtual token
    text: str  # those tokens decoded
    metric: str  # the task's main metric (accuracy or token_f1)
    soft: dict  # the soft prompt's report on the examples
    hard: dict  # the projection's report on the same examples
    n: int
    split: str | None = None  # which split the examples came from, when known

    def to_dict(self) -> dict:
        return asdict(self)


def nearest_token_ids(embeddings: torch.Tensor, vocab: torch.Tensor) -> list[int]:
    """Index of the most cosine-similar row of `vocab` [V, d] for each row of `embeddings` [T, d]."""
    return cosine_matrix(embeddings.detach().float().cpu(), vocab.float().cpu()).argmax(dim=1).tolist()


def hard_prompt(base: BaseModel, token_ids: Sequence[int]) -> torch.Tensor:
    """[T, d]: the input embeddings of `token_ids`, exactly as the model embeds text."""
    with torch.no_grad():
        return base.embed(torch.tensor(list(token_ids), device=base.device)).float()


def score_projection(
    base: BaseModel,
    task: Task,
    embeddings: torch.Tensor,
    rows: Sequence[EvalRow],
    *,
    token_ids: Sequence[int] | None = None,
    batch_size: int = 32,
    split: str | None = None,
    head: Sequence[int] = (),
) -> ProjectionScore:
    """Score the soft prompt `embeddings` and its nearest-token projection on `rows`.

    `token_ids` are the nearest tokens when already known (inspect computes them); else they are found here.
    `head`: the hard tokens both sit after (a chat prompt placed after its system turn, `BasePrompt.head_ids`).
    """
    if token_ids is None:
        token_ids = nearest_token_ids(embeddings, vocabulary_embeddings(base))
    ids = [int(i) for i in token_ids]
    soft = evaluate(base, task, prompt_state(base, embeddings.detach(), head=head), rows, batch_size=batch_size)
    hard = evaluate(base, task, prompt_state(base, hard_prompt(base, ids), head=head), rows, batch_size=batch_size)
    return ProjectionScore(
        token_ids=ids,
        text=base.tokenizer.decode(ids),
        metric=task.metric,
        soft=soft,
        hard=hard,
        n=len(rows),
        split=split,
    )
