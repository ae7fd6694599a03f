"""A frozen weight matrix held quantised: the interface the linear, embedding and head modules share.

A matrix is [out_features, in_features] (rows are output channels, as in
nn.Linear; an embedding table is [vocab, dim], a tied LM head the same table).
Each kind (int8.py, int4.py) provides the product with PyTorch's own kernel,
the dequantised rows for a list of ids (an embedding lookup, a restricted
head, a tile of the backward) and a portable form for files. Nothing here ever
holds the whole fp32 matrix: every dequantisation is of `ROW_TILE` rows or of
the rows asked for.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

# Rows dequantised at a time in the backward and in the tile-by-tile product (a multiple of 64, the
# row block of the int4 kernel layout). 512 rows of a 3584-wide matrix are 7 MB of fp32.
ROW_TILE = 512


class QuantizedMatrix(nn.Module):
    """Base class: subclasses hold their tensors as buffers and implement the four methods below."""

    mode: str = ""
    out_features: int
    in_features: int
    row_tile: int = ROW_TILE

    def kernel_matmul(self, x: torch.Tensor) -> torch.Tensor | None:
        """x [M, in] @ W.T with PyTorch's packed-weight kernel, or None where it does not run (device, dtype)."""
        raise NotImplementedError

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Dequantised rows `ids` [R] -> [R, in], in the matrix's compute dtype."""
        raise NotImplementedError

    def portable(self) -> dict[str, torch.Tensor]:
        """The tensors as saved to a file: a layout that does not depend on the CPU that packed them."""
        raise NotImplementedError

    def load_portable_(self, tensors: dict[str, torch.Tensor]) -> None:
        raise NotImplementedError

    def load_float_(self, weight: torch.Tensor) -> None:
        """Quantise `weight` [out, in] into this matrix (replacing meta or earlier tensors)."""
        raise NotImplementedError

    @property
    def dtype(self) -> torch.dtype:
        """What the dequantised rows and the products come out as (the dtype the model was loaded in)."""
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return next(self.buffers()).device

    def nbytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in self.buffers())

    def tile(self, start: int, stop: int) -> torch.Tensor:
        return self.rows(torch.arange(start, stop, device=self.device))

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        """x [M, in] @ W.T -> [M, out]: the kernel where it runs, else one dequantised tile of rows at a time."""
        out = self.kernel_matmul(x)
        if out is not None:
            return out
        parts = [
            F.linear(x, self.tile(s, min(s + self.row_tile, self.out_features)).to(x.dtype))
            for s in range(0, self.out_features, self.row_tile)
        ]
        return torch.cat(parts, dim=-1)

    def input_grad(self, grad_out: torch.Tensor) -> torch.Tensor:
        """grad_out [M, out] @ W -> [M, in], summed over tiles of `row_tile` rows (never all of W at once)."""
        grad_in = grad_out.new_zeros(grad_out.shape[0], self.in_features)
        for s in range(0, self.out_features, self.row_tile):
            e = min(s + self.row_tile, self.out_features)
            grad_in.addmm_(grad_out[:, s:e], self.tile(s, e).to(grad_out.dtype))
        return grad_in

    def dequantized(self) -> torch.Tensor:
        """The whole matrix in fp32: for tests and the reference model only (it is what quantising avoids)."""
        return torch.cat(
            [
                self.tile(s, min(s + self.row_tile, self.out_features))
                for s in range(0, self.out_features, self.row_tile)
            ]
        )

    def extra_repr(self) -> str:
        return f"{self.mode}, out_features={self.out_features}, in_features={self.in_features}"


def rows_in_chunks(weight: torch.Tensor, chunk: int = 1024) -> Iterator[tuple[int, torch.Tensor]]:
    """(start, fp32 rows) of `weight` a chunk at a time, so quantising a bf16 matrix never holds it all in fp32."""
    for s in range(0, weight.shape[0], chunk):
        yield s, weight[s : s + chunk].detach().to(torch.float32)
