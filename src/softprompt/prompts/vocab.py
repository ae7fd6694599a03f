"""The vocabulary as the model sees it: every token's input embedding, and similarity to it.

Shared by `inspect` (nearest tokens, label clustering), its plots and the
projection score, none of which should have to import another to get these.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models import BaseModel

EMBED_CHUNK = 8192  # rows embedded at a time (bounded memory for large vocabularies)


def vocabulary_embeddings(base: BaseModel) -> torch.Tensor:
    """[V, d] fp32: every token's input embedding exactly as the model sees it."""
    rows = base.vocab_size
    parts = []
    with torch.no_grad():
        for start in range(0, rows, EMBED_CHUNK):
            ids = torch.arange(start, min(rows, start + EMBED_CHUNK), device=base.device)
            parts.append(base.embed(ids).to("cpu", torch.float32))
    return torch.cat(parts)


def token_text(base: BaseModel, token_id: int) -> str:
    return base.tokenizer.decode([token_id])


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[A, B] cosine similarities; zero vectors (unused rows) get similarity 0."""
    return F.normalize(a, dim=-1, eps=1e-12) @ F.normalize(b, dim=-1, eps=1e-12).T
