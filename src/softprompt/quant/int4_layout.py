"""Where PyTorch's CPU int4 packing puts each weight, learned from the packing function itself.

`torch.ops.aten._convert_weight_to_int4pack_for_cpu` reorders the 4-bit
values for its kernel, and the order depends on the CPU build (blocks of 64
rows on AVX-512, 32 on AVX2, pairs of rows elsewhere). Rows never cross a block
of 64, so packing rows [64*i, 64*i + 64) gives bytes [32*i*K, 32*(i+1)*K) of
the whole: a matrix can be read one 64-row tile at a time. Rather than copy
each build's rule, `tile_positions` packs probe matrices whose values are the
hexadecimal digits of each weight's own index, and reads back from the packed
bytes where every index went. `check_layout` then checks the result on a
random matrix of two tiles, so a build that packs otherwise is refused with a
clear message instead of giving wrong gradients.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from ..errors import SoftPromptError

TILE_ROWS = 64


def pack(q: torch.Tensor) -> torch.Tensor:
    """int32 values 0..15 [N, K] (N a multiple of 64) -> the kernel's packed uint8 [N, K/2]."""
    return torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32).contiguous(), 1)


def nibbles(packed: torch.Tensor) -> torch.Tensor:
    """uint8 [..., B] -> the 4-bit values in byte order, low half first [..., 2B]."""
    return torch.stack([packed & 15, packed >> 4], dim=-1).flatten(-2)


@lru_cache(maxsize=32)
def tile_positions(k: int) -> torch.Tensor:
    """[64, k] int64: the position of weight (r, c) of a 64-row tile in that tile's nibble stream."""
    n = TILE_ROWS * k
    index = torch.arange(n, dtype=torch.int64)
    source = torch.zeros(n, dtype=torch.int64)
    shift = 0
    while (1 << shift) < n:
        digits = ((index >> shift) & 15).view(TILE_ROWS, k)
        source |= nibbles(pack(digits).flatten()).to(torch.int64) << shift
        shift += 4
    if not torch.equal(torch.bincount(source, minlength=n), torch.ones(n, dtype=torch.int64)):
        raise _unknown_layout()
    positions = torch.empty_like(source)
    positions[source] = torch.arange(n)
    check_layout(k, positions.view(TILE_ROWS, k))
    return positions.view(TILE_ROWS, k)


def check_layout(k: int, positions: torch.Tensor) -> None:
    gen = torch.Generator().manual_seed(0)
    q = torch.randint(0, 16, (2 * TILE_ROWS, k), generator=gen, dtype=torch.int32)
    stream = nibbles(pack(q).view(2, -1))
    if not torch.equal(stream[:, positions.flatten()].view(2 * TILE_ROWS, k).to(torch.int32), q):
        raise _unknown_layout()


def _unknown_layout() -> SoftPromptError:
    return SoftPromptError(
        f"this PyTorch build ({torch.__version__}) packs int4 weights in a layout softprompt cannot read back "
        "(needed for the backward pass and the embedding); use --quantize int8"
    )
