"""The vectors a new prompt starts from, in the input-embedding space: every method starts from these.

`--init`: random, vocab (Lester et al.: tokens drawn from the most frequent ones), labels (the label
words' embeddings first), text:"..." (the text's tokens, repeated as PEFT does). `file:PATH` (a
trained prompt as the start) is the method's own (`SoftPrompt.initialize`, `PrefixPrompt.initialize`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import SoftPromptError
from ..models import BaseModel

# Lester et al. sample initial prompt tokens from the 5,000 most common tokens.
FREQUENT_TOKENS = 5000


@dataclass(frozen=True)
class Start:
    """How a new prompt starts: its length T, `--init`, the label words (`labels`), the seed (`vocab`, `labels`,
    `random`), and whether a `file:` prompt made for another model of the same shape is taken."""

    num_virtual_tokens: int
    init: str
    label_words: list[str] | None = None
    seed: int = 0
    allow_mismatch: bool = False

    def __post_init__(self):
        if self.num_virtual_tokens < 1:
            raise SoftPromptError(f"--num-virtual-tokens must be at least 1, got {self.num_virtual_tokens}")

    @property
    def file(self) -> str | None:
        """The folder a `file:PATH` init names, or None for another init."""
        return self.init[len("file:") :] if self.init.startswith("file:") else None

    def embeddings(self, base: BaseModel) -> torch.Tensor:
        """[T, d] vectors for a `random`, `vocab`, `labels` or `text:` init (`file:` is the method's own)."""
        gen = torch.Generator().manual_seed(self.seed)
        return initial_embeddings(base, self.num_virtual_tokens, self.init, self.label_words, gen)


def initial_embeddings(
    base: BaseModel, t: int, init: str, label_words: list[str] | None, gen: torch.Generator
) -> torch.Tensor:
    """[T, d] input-embedding-space vectors to start a prompt from (`file:` is the method's: see above)."""
    d = base.hidden_size
    if init == "random":
        return torch.rand(t, d, generator=gen) - 0.5
    if init == "vocab":
        return _sample_vocab(base, t, gen)
    if init == "labels":
        return _label_init(base, t, label_words, gen)
    if init.startswith("text:"):
        return _text_init(base, t, init[len("text:") :])
    raise SoftPromptError(f"unknown --init '{init}'; choose one of: random, vocab, labels, text:\"...\", file:PATH")


def tile_rows(source: torch.Tensor, t: int) -> torch.Tensor:
    """The first `t` rows of `source` repeated as often as needed (a prompt of another length as a start)."""
    return source.repeat(math.ceil(t / source.shape[0]), 1)[:t].clone()


def frequent_token_ids(base: BaseModel, n: int = FREQUENT_TOKENS) -> torch.Tensor:
    """Ids of (roughly) the n most frequent tokens.

    BPE vocabularies are ordered by merge, i.e. by frequency in the tokenizer's
    training corpus, so the lowest non-special ids are the most common tokens.
    """
    vocab = base.vocab_size
    special = set(getattr(base.tokenizer, "all_special_ids", []) or [])
    ids = [i for i in range(min(vocab, n + len(special))) if i not in special]
    return torch.tensor(ids[:n])


def embed_ids(base: BaseModel, ids: torch.Tensor) -> torch.Tensor:
    """[N, d] fp32 on the CPU: the input embeddings of `ids`, exactly as the model embeds text."""
    with torch.no_grad():
        return base.embed(ids.to(base.device)).detach().to("cpu", torch.float32)


def _sample_vocab(base: BaseModel, t: int, gen: torch.Generator) -> torch.Tensor:
    pool = frequent_token_ids(base)
    return embed_ids(base, pool[torch.randint(len(pool), (t,), generator=gen)])


def _label_init(base: BaseModel, t: int, label_words: list[str] | None, gen: torch.Generator) -> torch.Tensor:
    if not label_words:
        raise SoftPromptError("--init labels needs a classification task with labels (a verbalizer)")
    if len(label_words) > t:
        raise SoftPromptError(
            f"--init labels needs at least one virtual token per label: {len(label_words)} labels, "
            f"--num-virtual-tokens {t}"
        )
    rows = []
    for words in label_words:
        ids = base.encode(words)
        if not ids:
            raise SoftPromptError(f"label words {words!r} encode to no tokens")
        rows.append(embed_ids(base, torch.tensor(ids)).mean(dim=0))  # multi-token labels: average
    rest = _sample_vocab(base, t - len(rows), gen)
    return torch.cat([torch.stack(rows), rest])


def _text_init(base: BaseModel, t: int, text: str) -> torch.Tensor:
    ids = base.encode(text)
    if not ids:
        raise SoftPromptError('--init text:"..." needs a non-empty text')
    ids = (ids * math.ceil(t / len(ids)))[:t]  # repeat then cut, as PEFT does
    return embed_ids(base, torch.tensor(ids))
