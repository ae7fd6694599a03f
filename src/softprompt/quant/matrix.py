"""A frozen weight matrix held quantised: the interface the linear, embedding and head modules share.

A matrix is [out_features, in_features] (rows are output channels, as in
nn.Linear; an embedding table is [vocab, dim], a tied LM head the same table).
Each kind (int8.py, int4.py) provides the dequantised rows for a list of ids
(an embedding lookup, a restricted head), a tile of consecutive rows, the
product with PyTorch's packed-weight kernel, and a portable form for files.

Two products (linear.frozen_matmul picks by whether autograd is recording):

- exact (training: gradients on): one tile of `row_tile` dequantised rows at a
  time, multiplied in the model's dtype (fp32 on CPU). The result is the
  dequantised model's to rounding, which is what makes the prompt's loss and
  gradient equal an fp32 model's of the same weights (docs/quantization.md).
- fast (inference: no_grad, as evaluation, prediction, decoding and the engine
  run): PyTorch's packed-weight kernel. On CPU those kernels are vectorised for
  bf16 activations only (with fp32 activations they fall back to scalar loops,
  an order of magnitude slower than an fp32 matmul), so the input is rounded to bf16 and the
  output comes back in the model's dtype: bf16 inference, about 3e-3 relative
  per product, reading 1 (int8) or 0.5 (int4) bytes per weight instead of 4.

Nothing here ever holds the whole fp32 matrix: every dequantisation is of
`row_tile` rows or of the rows asked for.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

# Rows dequantised at a time in the backward and in the exact product (a multiple of 64, the row
# block of the int4 kernel layout). 512 rows of a 3584-wide matrix are 7 MB of fp32.
ROW_TILE = 512
# Scales (and int4 zero points) are stored in bf16: what the fast kernels take, and half the bytes.
SCALE_DTYPE = torch.bfloat16


class QuantizedMatrix(nn.Module):
    """Base class: subclasses hold their tensors as buffers and implement the methods that raise here."""

    mode: str = ""
    out_features: int
    in_features: int
    row_tile: int = ROW_TILE
    # (fused.SharedProduct, index) where this matrix's table is part of one its siblings share (fused.py).
    shared: tuple | None = None

    def __init__(self, dtype: torch.dtype):
        super().__init__()
        # The dtype rows are dequantised to and products come out in: the model's (fp32 on CPU).
        self.dtype = dtype

    def kernel_matmul(self, x: torch.Tensor) -> torch.Tensor | None:
        """x [M, in] @ W.T with PyTorch's packed-weight kernel (bf16 inside), or None where none runs."""
        raise NotImplementedError

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Dequantised rows `ids` [R] -> [R, in], in `dtype`."""
        raise NotImplementedError

    def tile(self, start: int, stop: int) -> torch.Tensor:
        """Dequantised rows start..stop-1 (consecutive: cheaper than `rows`)."""
        raise NotImplementedError

    def tile_into(self, start: int, stop: int, out: torch.Tensor) -> torch.Tensor:
        """`tile(start, stop)` written into `out` [stop - start, in] (a buffer the products reuse); returns it."""
        return out.copy_(self.tile(start, stop))

    def portable(self) -> dict[str, torch.Tensor]:
        """The tensors as saved to a file: a layout that does not depend on the CPU that packed them."""
        raise NotImplementedError

    def load_portable_(self, tensors: dict[str, torch.Tensor]) -> None:
        raise NotImplementedError

    def load_float_(self, weight: torch.Tensor) -> None:
        """Quantise `weight` [out, in] into this matrix (replacing meta or earlier tensors)."""
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return next(self.buffers()).device

    def nbytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in self.buffers())

    def _tiles(self) -> Iterator[tuple[int, int]]:
        for s in range(0, self.out_features, self.row_tile):
            yield s, min(s + self.row_tile, self.out_features)

    def fast_matmul(self, x: torch.Tensor) -> torch.Tensor:
        """x [M, in] @ W.T -> [M, out] with the packed kernel where one runs, else exactly."""
        out = self.kernel_matmul(x)
        return self.exact_matmul(x) if out is None else out

    def _tile_buffer(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """One tile's worth of scratch for a product: every tile of it is dequantised into this one
        buffer (allocating and freeing a tile per step fragments the heap: allocator.py)."""
        return torch.empty(min(self.row_tile, self.out_features), self.in_features, dtype=dtype, device=device)

    def exact_matmul(self, x: torch.Tensor) -> torch.Tensor:
        """x @ W.T one dequantised tile of rows at a time, in x's dtype."""
        buffer = self._tile_buffer(x.dtype, x.device)
        if self.out_features <= self.row_tile:
            return F.linear(x, self.tile_into(0, self.out_features, buffer))
        out = x.new_empty(x.shape[0], self.out_features)
        for s, e in self._tiles():
            # Straight into the output's columns (BLAS takes the row stride): no temporary per tile.
            torch.mm(x, self.tile_into(s, e, buffer[: e - s]).T, out=out[:, s:e])
        return out

    def input_grad(self, grad_out: torch.Tensor) -> torch.Tensor:
        """grad_out [M, out] @ W -> [M, in], summed over tiles of `row_tile` rows (never all of W at once)."""
        grad_in = grad_out.new_zeros(grad_out.shape[0], self.in_features)
        buffer = self._tile_buffer(grad_out.dtype, grad_out.device)
        for s, e in self._tiles():
            grad_in.addmm_(grad_out[:, s:e], self.tile_into(s, e, buffer[: e - s]))
        return grad_in

    def dequantized(self) -> torch.Tensor:
        """The whole matrix dequantised: for tests and the reference model only (it is what quantising avoids)."""
        return torch.cat([self.tile(s, e) for s, e in self._tiles()])

    def extra_repr(self) -> str:
        return f"{self.mode}, out_features={self.out_features}, in_features={self.in_features}"


def rows_in_chunks(weight: torch.Tensor, chunk: int = 1024) -> Iterator[tuple[int, torch.Tensor]]:
    """(start, fp32 rows) of `weight` a chunk at a time, so quantising a bf16 matrix never holds it all in fp32."""
    for s in range(0, weight.shape[0], chunk):
        yield s, weight[s : s + chunk].detach().to(torch.float32)


def aligned(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`tensor` as `dtype`, copied only if its address breaks the allocator's 64-byte alignment.

    PyTorch's packed kernels crash on an unaligned table (a view into a mapped file may sit
    anywhere); a tensor the loader read into memory of its own is kept as it is (a copy would
    double a load's peak and fragment the heap).
    """
    if tensor.dtype == dtype and tensor.data_ptr() % 64 == 0 and tensor.is_contiguous():
        return tensor
    return torch.empty(tensor.shape, dtype=dtype, device=tensor.device).copy_(tensor)


def on_cpu_in_bf16(x: torch.Tensor, kernel) -> torch.Tensor | None:
    """`kernel(x in bf16)` back in x's dtype, on CPU; None elsewhere."""
    if x.device.type != "cpu":
        return None
    return kernel(x.to(torch.bfloat16).contiguous()).to(x.dtype)
