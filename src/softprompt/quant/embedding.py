"""An input embedding over a quantised table: gather the rows asked for, dequantise only those.

The table is a QuantizedMatrix [vocab, dim] (int8 rows, or int4 groups along
dim); a tied LM head (linear.QuantizedLinear) holds this same matrix. Models
that scale their embeddings inside the module (Gemma3TextScaledWordEmbedding:
`embedding * embed_scale.to(weight dtype)`) keep that step, computed the same way.
"""

from __future__ import annotations

import torch
from torch import nn

from .matrix import QuantizedMatrix


class QuantizedEmbedding(nn.Module):
    def __init__(
        self, matrix: QuantizedMatrix, padding_idx: int | None = None, embed_scale: torch.Tensor | None = None
    ):
        super().__init__()
        self.matrix = matrix
        self.padding_idx = padding_idx
        if embed_scale is not None:
            self.register_buffer("embed_scale", embed_scale.detach().clone(), persistent=False)
        else:
            self.embed_scale = None

    @property
    def num_embeddings(self) -> int:
        return self.matrix.out_features

    @property
    def embedding_dim(self) -> int:
        return self.matrix.in_features

    def dequantize_rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows `ids` [R] of the table as stored (without the embedding scale) [R, dim]."""
        return self.matrix.rows(ids)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        rows = self.matrix.rows(input_ids.reshape(-1)).view(*input_ids.shape, self.embedding_dim)
        return rows if self.embed_scale is None else rows * self.embed_scale.to(rows.dtype)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}" + ("" if self.embed_scale is None else ", scaled")
