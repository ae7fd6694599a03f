"""Frozen base models whose weights stay quantised (int8, int4) in memory and on disk.

The forward runs PyTorch's packed-weight CPU kernels; the backward gives only
the input's gradient (the weights never train), dequantising a tile of rows at
a time. See docs/quantization.md; the names below are the package's contract
with the loaders and the front ends.
"""

from .config import QUANT_MODES, Quantization
from .fused import fuse_shared_inputs
from .model import (
    dequantized_model,
    load_tensor_,
    quantization_of,
    quantize_model,
    quantized_skeleton,
    weight_bytes,
    weight_count,
)
from .storage import load_quantized, save_quantized

__all__ = [
    "QUANT_MODES",
    "Quantization",
    "dequantized_model",
    "fuse_shared_inputs",
    "load_quantized",
    "load_tensor_",
    "quantization_of",
    "quantize_model",
    "quantized_skeleton",
    "save_quantized",
    "weight_bytes",
    "weight_count",
]
