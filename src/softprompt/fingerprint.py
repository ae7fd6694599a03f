"""The fingerprint of a base model: a short hash of its input embedding table.

A prompt stores it to refuse being used with another model. Kept apart from
`models` so the loaders (`quantized_load`) can hash a table as it streams in
without importing the module that calls them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import torch


def embedding_fingerprint(weight: torch.Tensor, chunk_rows: int = 8192) -> str:
    """A short hash of the embedding matrix that identifies the base model.

    Hashed in bf16 so the same model loaded in fp32, fp16 or bf16 gives the
    same fingerprint, while any retrained or different model does not.
    """
    rows, dim = weight.shape
    return fingerprint_of_rows((weight[s : s + chunk_rows] for s in range(0, rows, chunk_rows)), rows, dim)


def fingerprint_of_rows(chunks: Iterable[torch.Tensor], rows: int, dim: int) -> str:
    """`embedding_fingerprint` of a table given a block of rows at a time, in order (streaming loaders,
    dequantised tables): the same digest as the whole table's, without holding it in memory."""
    digest = hashlib.blake2b(digest_size=12)
    for chunk in chunks:
        digest.update(chunk.detach().to("cpu", torch.bfloat16).contiguous().view(torch.int16).numpy().tobytes())
    return f"{rows}x{dim}:{digest.hexdigest()}"
