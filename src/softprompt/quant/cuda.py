"""The int8 product on a CUDA device through bitsandbytes, where it is installed.

UNTESTED HERE: no machine this project is tested on has a GPU. Everything else
on CUDA (the int4 product, every backward, the embedding) is the device-neutral
dequantise-a-tile path of matrix.py, which the CPU tests exercise too.

Our int8 table is bitsandbytes' own row-wise layout: CB = the int8 table,
SCB = the row's absmax = scale * 127, so no copy is made. bitsandbytes'
LLM.int8() kernel also quantises the *activations* row-wise (threshold 0: no
outlier split), so on CUDA the forward is close to, not equal to, the
dequantised model's (about 1e-2 relative, not 1e-4); the input gradient stays
the exact tiled one. int4 does not use NF4: NF4's normal-quantile code book
would be a different quantisation from the CPU's int4 groups, so the same
--quantize int4 would train against other weights on a GPU.
bitsandbytes is not a dependency of softprompt.
"""

from __future__ import annotations

import torch


def bnb_int8_matmul(qweight: torch.Tensor, scales: torch.Tensor, x: torch.Tensor) -> torch.Tensor | None:
    """x [M, in] @ (qweight * scales[:, None]).T with bitsandbytes' int8 kernel, or None without it."""
    try:
        import bitsandbytes as bnb
    except ImportError:
        return None
    state = bnb.MatmulLtState()
    state.CB, state.SCB = qweight, (scales.float() * 127).contiguous()
    state.has_fp16_weights, state.threshold = False, 0.0
    compute = x.dtype if x.dtype in (torch.float16, torch.bfloat16) else torch.float16
    return bnb.matmul(x.to(compute), qweight, state=state).to(x.dtype)
