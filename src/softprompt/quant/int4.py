"""int4: asymmetric, a scale and a zero point per group of inputs, run by PyTorch's CPU int4 kernel.

Each row's inputs are cut into groups of `group_size` (32 by default: llama.cpp's
block; see config.py). A group with minimum m and maximum M is held as 4-bit q in
0..15 with scale s = (M - m) / 15, and dequantises as

    w = (q - 8) * s + z,   z = m + 8 * s

which is the convention of the "tinygemm" kernels (`_weight_int4pack_mm_for_cpu`
and torchao's int4 weight-only layout; checked against our own dequantisation in
tests/quant/test_matrix.py). Asymmetric groups fit skewed groups better than a
symmetric scale (llama.cpp's Q4_1 and K-quants are asymmetric too; bitsandbytes'
NF4 is symmetric with a normal-quantile code book, which the CPU kernel lacks).

Scale and zero are rounded to bf16 (what the fast kernel takes) before the
weights are rounded to them, so every product path uses the same weights.
In memory the 4-bit values are in the kernel's packed order (int4_layout.py), two
per byte, and the scales and zeros bf16 [groups, rows, 2]: 0.5 + 4/group_size
bytes per weight (0.625 at 32). Rows are padded to a multiple of 64 (the kernel's
row block) and inputs to a multiple of the group size with zeros; the products
drop the padded rows, and padded inputs meet zeros in x, so neither changes a
result. Files hold a portable order (`portable`): row-major, even input in the
low half of each byte.
"""

from __future__ import annotations

import torch

from .int4_layout import TILE_ROWS, nibbles, pack, tile_positions
from .matrix import SCALE_DTYPE, QuantizedMatrix, on_cpu_in_bf16, rows_in_chunks

PACK_ROWS = 16 * TILE_ROWS  # rows quantised and packed at a time


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


class Int4Matrix(QuantizedMatrix):
    mode = "int4"

    def __init__(self, out_features: int, in_features: int, group_size: int = 32, *, dtype=torch.float32, device=None):
        super().__init__(dtype)
        self.out_features, self.in_features, self.group_size = out_features, in_features, group_size
        self.padded_out, self.padded_in = _round_up(out_features, TILE_ROWS), _round_up(in_features, group_size)
        groups = self.padded_in // group_size
        self.register_buffer(
            "packed", torch.empty(self.padded_out, self.padded_in // 2, dtype=torch.uint8, device=device)
        )
        self.register_buffer("scales_zeros", torch.empty(groups, self.padded_out, 2, dtype=SCALE_DTYPE, device=device))

    @classmethod
    def from_float(cls, weight: torch.Tensor, group_size: int = 32) -> Int4Matrix:
        matrix = cls(*weight.shape, group_size, dtype=weight.dtype, device=weight.device)
        matrix.load_float_(weight)
        return matrix

    def load_float_(self, weight: torch.Tensor) -> None:
        if tuple(weight.shape) != (self.out_features, self.in_features):
            raise ValueError(
                f"weight {tuple(weight.shape)} does not fit an int4 matrix {self.out_features}x{self.in_features}"
            )
        gs, groups = self.group_size, self.padded_in // self.group_size
        packed = torch.empty(self.padded_out, self.padded_in // 2, dtype=torch.uint8)
        scale = torch.zeros(self.padded_out, groups, dtype=SCALE_DTYPE)
        zero = torch.zeros(self.padded_out, groups, dtype=SCALE_DTYPE)
        # A chunk of rows at a time (a multiple of 64: rows never cross a block of the kernel's
        # layout, so packing by chunks equals packing at once): only that chunk is ever in fp32.
        for s, w in rows_in_chunks(weight.cpu(), PACK_ROWS):
            e = min(s + PACK_ROWS, self.padded_out)
            w = torch.nn.functional.pad(w, (0, self.padded_in - self.in_features, 0, e - s - len(w)))
            w = w.view(e - s, groups, gs)
            low, high = w.amin(dim=-1), w.amax(dim=-1)
            step = ((high - low) / 15).to(SCALE_DTYPE)
            mid = (low + 8 * step.float()).to(SCALE_DTYPE)  # the zero point: the value of q = 8
            safe = torch.where(step > 0, step, torch.ones_like(step)).float()
            q = torch.round((w - mid.float()[..., None]) / safe[..., None] + 8).clamp_(0, 15).flatten(1)
            packed[s:e] = pack(q)
            scale[s:e], zero[s:e] = step, mid
        self._set(packed, scale, zero, device=weight.device)

    def _set(self, packed: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, *, device) -> None:
        """The kernel's packed values [padded_out, padded_in / 2], scale and zero [padded_out, groups]."""
        self.packed = packed.to(device)
        self.scales_zeros = torch.stack([scale.T, zero.T], dim=-1).to(device, SCALE_DTYPE).contiguous()

    def kernel_matmul(self, x: torch.Tensor) -> torch.Tensor | None:
        if self.padded_in != self.in_features:
            x = torch.nn.functional.pad(x, (0, self.padded_in - self.in_features))
        out = on_cpu_in_bf16(
            x,
            lambda xb: torch.ops.aten._weight_int4pack_mm_for_cpu(xb, self.packed, self.group_size, self.scales_zeros),
        )
        return out if out is None or self.padded_out == self.out_features else out[:, : self.out_features]

    def _values(self, ids: torch.Tensor) -> torch.Tensor:
        """The 4-bit values of rows `ids` [R] -> uint8 [R, padded_in], read straight from the packed bytes."""
        positions = tile_positions(self.padded_in).to(ids.device)[ids % TILE_ROWS]  # [R, padded_in]
        tile_bytes = TILE_ROWS * self.padded_in // 2
        byte = (ids // TILE_ROWS)[:, None] * tile_bytes + positions // 2
        return (self.packed.view(-1)[byte] >> ((positions % 2) * 4).to(torch.uint8)) & 15

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids.to(self.packed.device, torch.int64)
        return self._dequantize(self._values(ids), self.scales_zeros[:, ids])

    def _tile_values(self, start: int, stop: int) -> torch.Tensor:
        """The 4-bit values of rows start..stop-1 -> uint8 [stop - start, padded_in]."""
        if start % TILE_ROWS:
            return self._values(torch.arange(start, stop, device=self.packed.device))
        # Whole 64-row tiles: one gather index for all of them instead of one per row.
        end = min(_round_up(stop, TILE_ROWS), self.padded_out)
        stream = nibbles(self.packed[start:end].reshape(-1, TILE_ROWS * self.padded_in // 2))
        order = tile_positions(self.padded_in).to(stream.device).flatten()
        return stream[:, order].view(end - start, self.padded_in)[: stop - start]

    def tile(self, start: int, stop: int) -> torch.Tensor:
        return self._dequantize(self._tile_values(start, stop), self.scales_zeros[:, start:stop])

    def _dequantize(self, values: torch.Tensor, scales_zeros: torch.Tensor) -> torch.Tensor:
        """values uint8 [R, padded_in], scales_zeros [groups, R, 2] -> [R, in_features]."""
        rows, gs = values.shape[0], self.group_size
        scale = scales_zeros[..., 0].T[..., None].to(self.dtype)
        zero = scales_zeros[..., 1].T[..., None].to(self.dtype)
        w = (values.view(rows, -1, gs).to(self.dtype) - 8) * scale + zero
        return w.view(rows, self.padded_in)[:, : self.in_features]

    def portable(self) -> dict[str, torch.Tensor]:
        values = torch.cat([self._tile_values(s, e) for s, e in self._tiles()])
        sz = self.scales_zeros[:, : self.out_features]
        return {
            "qweight": values[:, 0::2] | (values[:, 1::2] << 4),
            "scales": sz[..., 0].T.contiguous(),
            "zeros": sz[..., 1].T.contiguous(),
        }

    def load_portable_(self, tensors: dict[str, torch.Tensor]) -> None:
        both = tensors["qweight"].cpu()
        packed = torch.empty(self.padded_out, self.padded_in // 2, dtype=torch.uint8)
        for s in range(0, self.padded_out, PACK_ROWS):
            e = min(s + PACK_ROWS, self.padded_out)
            q = torch.zeros(e - s, self.padded_in, dtype=torch.uint8)
            part = nibbles(both[s:e])
            q[: len(part)] = part
            packed[s:e] = pack(q)
        groups = self.padded_in // self.group_size
        scale, zero = (torch.zeros(self.padded_out, groups, dtype=SCALE_DTYPE) for _ in range(2))
        scale[: self.out_features], zero[: self.out_features] = tensors["scales"].cpu(), tensors["zeros"].cpu()
        self._set(packed, scale, zero, device=tensors["qweight"].device)
