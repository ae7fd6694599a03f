"""A frozen linear layer over a quantised matrix, whose backward gives only the input's gradient.

While autograd records (training), the product is the exact one (tiles of
dequantised rows in the model's dtype) and the backward needs grad_out @ W and
nothing else: `QuantizedMatrix.input_grad` builds it a tile of rows at a time.
Autograd keeps no activation for it (the matrix is all it needs). Without
autograd (evaluation, prediction, decoding, the engine: all under no_grad)
the packed-weight kernel runs instead (matrix.py says why it is bf16 inside).
The bias, if any, stays a frozen fp32 parameter.
"""

from __future__ import annotations

import torch
from torch import nn

from .matrix import QuantizedMatrix


class _FrozenMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, matrix: QuantizedMatrix) -> torch.Tensor:
        ctx.matrix = matrix
        return matrix.exact_matmul(x)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        return ctx.matrix.input_grad(grad_out.contiguous()), None


def frozen_matmul(x: torch.Tensor, matrix: QuantizedMatrix) -> torch.Tensor:
    """x [..., in] @ W.T -> [..., out], differentiable in x only; exact while autograd records, else fast.

    Decoding runs this once per linear per token, so it is kept to the few calls it needs
    (on SmolLM2-135M the Python around the kernel was a tenth of an int8 token's time).
    """
    flat = x.reshape(-1, x.shape[-1])
    out = _FrozenMatmul.apply(flat, matrix) if torch.is_grad_enabled() else matrix.fast_matmul(flat)
    return out.view(*x.shape[:-1], out.shape[-1])


class QuantizedLinear(nn.Module):
    """nn.Linear (or GPT-2's Conv1D, whose [in, out] weight is held transposed) with a quantised weight.

    `matrix` may be shared: a tied LM head holds the input embedding's matrix (one copy).
    """

    def __init__(self, matrix: QuantizedMatrix, bias: torch.Tensor | None = None, *, transposed: bool = False):
        super().__init__()
        self.matrix = matrix
        self.register_parameter("bias", None if bias is None else nn.Parameter(bias.detach(), requires_grad=False))
        # True if it replaced a Conv1D: checkpoints store its weight as [in, out] (see model.load_tensor_).
        self.transposed = transposed

    @property
    def in_features(self) -> int:
        return self.matrix.in_features

    @property
    def out_features(self) -> int:
        return self.matrix.out_features

    @property
    def weight(self) -> torch.Tensor:
        """An empty int8 marker, as bitsandbytes' int8 layers show: transformers code that casts its input
        to `layer.weight.dtype` (T5's feed-forward) skips int8 weights. It holds no values; use
        `dequantize_rows` for those."""
        return torch.empty(0, dtype=torch.int8, device="meta")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        matrix = self._modules["matrix"]  # not nn.Module.__getattr__'s search: this runs per linear per token
        out = None
        if matrix.shared is not None and not torch.is_grad_enabled():
            shared, index = matrix.shared
            out = shared.columns(index, x)  # one product for q/k/v (gate/up) while decoding: fused.py
        if out is None:
            out = frozen_matmul(x, matrix)
        bias = self._parameters["bias"]
        return out if bias is None else out + bias

    def dequantize_rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Output channels `ids` of the weight, dequantised [K, in] (the restricted LM head)."""
        return self.matrix.rows(ids)

    def extra_repr(self) -> str:
        return f"bias={self.bias is not None}" + (", transposed (Conv1D)" if self.transposed else "")
