"""int8: symmetric, one scale per output channel (row), run by `torch._weight_int8pack_mm`.

w = q * scale[row] with q in [-127, 127] and scale = max|w[row]| / 127 (rounded
to bf16 first, so every product path uses the same weights): the layout of
PyTorch's CPU weight-only int8 kernel (and torchao's int8 weight-only), and of
bitsandbytes' row-wise int8 without its outlier split. One byte per weight plus
2 bytes per row. The table is its own portable form. On CUDA the same table
feeds bitsandbytes' int8 kernel where installed (cuda.py).
"""

from __future__ import annotations

import torch

from .cuda import bnb_int8_matmul
from .matrix import SCALE_DTYPE, QuantizedMatrix, aligned, rows_in_chunks


class Int8Matrix(QuantizedMatrix):
    mode = "int8"

    def __init__(self, out_features: int, in_features: int, *, dtype=torch.float32, device=None):
        super().__init__(dtype)
        self.out_features, self.in_features = out_features, in_features
        self.register_buffer("qweight", torch.empty(out_features, in_features, dtype=torch.int8, device=device))
        self.register_buffer("scales", torch.empty(out_features, dtype=SCALE_DTYPE, device=device))

    @classmethod
    def from_float(cls, weight: torch.Tensor) -> Int8Matrix:
        matrix = cls(*weight.shape, dtype=weight.dtype, device=weight.device)
        matrix.load_float_(weight)
        return matrix

    def load_float_(self, weight: torch.Tensor) -> None:
        if tuple(weight.shape) != (self.out_features, self.in_features):
            raise ValueError(
                f"weight {tuple(weight.shape)} does not fit an int8 matrix {self.out_features}x{self.in_features}"
            )
        q = torch.empty(weight.shape, dtype=torch.int8, device=weight.device)
        scales = torch.empty(weight.shape[0], dtype=SCALE_DTYPE, device=weight.device)
        for s, w in rows_in_chunks(weight):
            amax = w.abs().amax(dim=1)
            scale = torch.where(amax > 0, amax / 127, torch.ones_like(amax)).to(SCALE_DTYPE)
            q[s : s + len(w)] = torch.round(w / scale.float()[:, None]).clamp_(-127, 127).to(torch.int8)
            scales[s : s + len(w)] = scale
        self.qweight, self.scales = q, scales
        self.shared = None  # a new table: no longer part of a shared one (fused.py)

    def kernel_matmul(self, x: torch.Tensor) -> torch.Tensor | None:
        if x.device.type == "cpu":
            # on_cpu_in_bf16 written out: decoding runs this per linear per token.
            b = self._buffers
            return torch._weight_int8pack_mm(x.to(torch.bfloat16).contiguous(), b["qweight"], b["scales"]).to(x.dtype)
        if x.device.type == "cuda":
            return bnb_int8_matmul(self.qweight, self.scales, x)
        return None

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        return self.qweight[ids].to(self.dtype) * self.scales[ids, None].to(self.dtype)

    def tile(self, start: int, stop: int) -> torch.Tensor:
        return self.qweight[start:stop].to(self.dtype) * self.scales[start:stop, None].to(self.dtype)

    def portable(self) -> dict[str, torch.Tensor]:
        return {"qweight": self.qweight, "scales": self.scales}

    def tile_into(self, start: int, stop: int, out: torch.Tensor) -> torch.Tensor:
        # The same two roundings as `tile` (int8 -> float exactly, then one product), in place.
        return out.copy_(self.qweight[start:stop]).mul_(self.scales[start:stop, None])

    def load_portable_(self, tensors: dict[str, torch.Tensor]) -> None:
        self.qweight = aligned(tensors["qweight"], torch.int8)
        self.scales = aligned(tensors["scales"], SCALE_DTYPE)
        self.shared = None
