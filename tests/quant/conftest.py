import pytest

from softprompt.models import BaseModel, quantize_base
from softprompt.quant import Quantization, dequantized_model
from softprompt.testing import tiny_base


@pytest.fixture(scope="session")
def quantized_pair():
    """`quantized_pair(kind, mode)` -> (quantised tiny BaseModel, fp32 BaseModel of its dequantised weights)."""
    cache = {}

    def get(kind: str, mode: str, group_size: int = 32):
        key = (kind, mode, group_size)
        if key not in cache:
            quantized = quantize_base(tiny_base(kind), Quantization(mode, group_size))
            reference = BaseModel(
                dequantized_model(quantized.model), quantized.tokenizer, f"{quantized.name}-dequantized"
            )
            cache[key] = (quantized, reference)
        return cache[key]

    return get
