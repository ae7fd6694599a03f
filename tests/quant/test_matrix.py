"""The quantised matrices: PyTorch's kernels against our own dequantisation, padding, tiles, files."""

import pytest
import torch
import torch.nn.functional as F

from softprompt.quant.int4 import Int4Matrix
from softprompt.quant.int8 import Int8Matrix
from softprompt.quant.linear import frozen_matmul

# (rows, inputs): aligned; rows not a multiple of 64 (the kernel's row block); inputs not a multiple
# of the group (padded); a vocabulary-sized odd row count.
SHAPES = [(128, 64), (100, 64), (130, 96), (259, 32), (64, 80)]


def make(kind: str, weight: torch.Tensor, group_size: int = 32):
    return Int8Matrix.from_float(weight) if kind == "int8" else Int4Matrix.from_float(weight, group_size)


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_products_equal_our_dequantisation(kind, shape):
    """Under autograd the product is the dequantised weight's to rounding; without it PyTorch's packed kernel
    runs in bf16 (the inference path), close to it."""
    torch.manual_seed(0)
    weight = torch.randn(shape)
    m = make(kind, weight)
    w = m.dequantized()
    assert w.shape == shape and w.dtype == torch.float32
    x = torch.randn(7, shape[1])
    assert rel(frozen_matmul(x, m), x @ w.T) < 1e-6  # gradients are on: the exact path
    with torch.no_grad():
        fast = frozen_matmul(x, m)
    assert torch.equal(fast, m.kernel_matmul(x)) and fast.dtype == torch.float32
    assert rel(fast, x @ w.T) < 1e-2
    ids = torch.tensor([shape[0] - 1, 0, 3, 3, shape[0] // 2])
    assert torch.equal(m.rows(ids), w[ids])
    assert torch.equal(m.tile(1, shape[0] - 1), w[1:-1])
    # what quantising costs: within half a step of the weight (+ the scale's bf16 rounding)
    if kind == "int8":
        step = weight.abs().amax(1, keepdim=True) / 127
    else:
        groups = F.pad(weight, (0, -shape[1] % 32)).view(shape[0], -1, 32)
        step = ((groups.amax(-1) - groups.amin(-1)) / 15).repeat_interleave(32, 1)[:, : shape[1]]
    assert ((w - weight).abs() <= step * 0.52 + 1e-6).all()


@pytest.mark.parametrize("group_size", [32, 64, 128])
def test_int4_groups_and_zero_point_convention(group_size):
    torch.manual_seed(1)
    weight = torch.randn(64, 256) + 3  # skewed groups: the zero point matters
    m = Int4Matrix.from_float(weight, group_size)
    assert m.scales_zeros.shape == (256 // group_size, 64, 2)
    w = m.dequantized()
    # each group's min and max come back (q = 0 and q = 15) up to the bf16 rounding of scale and zero
    g = weight.view(64, -1, group_size)
    torch.testing.assert_close(w.view(64, -1, group_size).amin(-1), g.amin(-1), atol=0.03, rtol=0)
    torch.testing.assert_close(w.view(64, -1, group_size).amax(-1), g.amax(-1), atol=0.03, rtol=0)
    # the tinygemm convention: the kernel dequantises (q - 8) * scale + zero, as we do
    assert rel(m.fast_matmul(torch.eye(256)), w.T) < 1e-2
    x = torch.randn(3, 256)
    assert rel(m.exact_matmul(x), x @ w.T) < 1e-6


@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_tile_fallback_and_constant_rows(kind, monkeypatch):
    weight = torch.randn(70, 64)
    weight[5] = 0.25  # a constant row (zero range) dequantises to it
    m = make(kind, weight)
    torch.testing.assert_close(m.rows(torch.tensor([5])), weight[5:6], atol=1e-3, rtol=0)
    m.row_tile = 64
    x = torch.randn(4, 64)
    torch.testing.assert_close(m.exact_matmul(x), x @ m.dequantized().T)
    monkeypatch.setattr(type(m), "kernel_matmul", lambda self, x: None)  # as on CUDA without bitsandbytes
    with torch.no_grad():
        torch.testing.assert_close(frozen_matmul(x, m), x @ m.dequantized().T)


@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_backward_is_the_input_gradient_through_the_dequantised_weight(kind):
    torch.manual_seed(2)
    m = make(kind, torch.randn(300, 96))
    m.row_tile = 128  # tiles of 128, 128 and 44 rows
    x = torch.randn(2, 5, 96, requires_grad=True)
    frozen_matmul(x, m).pow(2).sum().backward()
    x_ref = x.detach().clone().requires_grad_(True)
    F.linear(x_ref, m.dequantized()).pow(2).sum().backward()
    assert rel(x.grad, x_ref.grad) < 1e-5
    assert all(not b.requires_grad for b in m.buffers())


@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_backward_dequantises_a_tile_of_rows_at_a_time(kind, monkeypatch):
    """The training forward and backward of a wide layer never build its whole fp32 weight: every dequantised block has at
    most `row_tile` rows, and the peak of what it allocates stays far below the fp32 matrix."""
    torch.manual_seed(3)
    rows, cols = 4096, 256
    m = make(kind, torch.randn(rows, cols))
    m.row_tile = 256
    seen = []
    cls = type(m)
    original = cls.tile_into

    def watched(self, start, stop, out):
        seen.append(stop - start)
        assert out.shape[0] == stop - start
        return original(self, start, stop, out)

    monkeypatch.setattr(cls, "tile_into", watched)
    monkeypatch.setattr(cls, "dequantized", lambda self: pytest.fail("the whole matrix was dequantised"))
    x = torch.randn(8, cols, requires_grad=True)
    with torch.autograd.profiler.profile(profile_memory=True) as prof:
        frozen_matmul(x, m).sum().backward()
    assert seen and max(seen) <= 256 and sum(seen) == 2 * rows  # the forward and the backward: each row once
    fp32_bytes = rows * cols * 4
    peak = max(e.cpu_memory_usage for e in prof.function_events)
    assert peak < fp32_bytes / 4, f"an operation allocated {peak} bytes (the fp32 matrix is {fp32_bytes})"


@pytest.mark.parametrize("shape", [(100, 64), (130, 96)])
@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_portable_form_round_trips(kind, shape):
    m = make(kind, torch.randn(shape))
    again = type(m)(*shape, **({"group_size": 32} if kind == "int4" else {}))
    again.load_portable_({k: v.clone() for k, v in m.portable().items()})
    assert torch.equal(again.dequantized(), m.dequantized())
    x = torch.randn(3, shape[1])
    assert torch.equal(again.fast_matmul(x), m.fast_matmul(x))
    if kind == "int4":
        assert m.portable()["qweight"].shape == (shape[0], -(-shape[1] // 32) * 16)


def test_cuda_int8_hands_bitsandbytes_its_own_row_layout(monkeypatch):
    """No GPU here: a stand-in for bitsandbytes checks what the CUDA path gives it (CB, SCB = absmax)."""
    import sys
    import types

    from softprompt.quant.cuda import bnb_int8_matmul

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    m = Int8Matrix.from_float(torch.randn(32, 16))
    x = torch.randn(3, 16)
    assert bnb_int8_matmul(m.qweight, m.scales, x) is None  # not installed: the tile path runs instead

    class State:
        pass

    def matmul(a, b, state):
        assert b is state.CB and not state.has_fp16_weights and state.threshold == 0.0
        return a.float() @ (state.CB.float() * state.SCB[:, None] / 127).T

    fake = types.SimpleNamespace(MatmulLtState=State, matmul=matmul)
    monkeypatch.setitem(sys.modules, "bitsandbytes", fake)
    torch.testing.assert_close(bnb_int8_matmul(m.qweight, m.scales, x), x @ m.dequantized().T, atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_tensors_read_at_odd_addresses_are_copied_before_the_kernel_sees_them(kind):
    """safetensors hands out tensors at any offset of the file; the packed kernels crash on unaligned tables."""
    m = make(kind, torch.randn(96, 64))
    odd = {}
    for key, value in m.portable().items():
        raw = torch.empty(value.numel() * value.element_size() + 3, dtype=torch.uint8)
        view = raw[3:].view(value.dtype).view(value.shape) if value.element_size() == 1 else None
        if view is None:  # multi-byte: shift by one element instead
            view = torch.empty(value.numel() + 1, dtype=value.dtype)[1:].view(value.shape)
        view.copy_(value)
        odd[key] = view
    again = type(m)(96, 64)
    again.load_portable_(odd)
    assert all(b.data_ptr() % 64 == 0 for b in again.buffers())
    with torch.no_grad():
        x = torch.randn(5, 64)
        assert torch.equal(frozen_matmul(x, again), frozen_matmul(x, m))


def test_an_aligned_table_is_kept_and_an_unaligned_one_copied():
    from softprompt.quant.matrix import aligned

    table = torch.zeros(130, dtype=torch.int8)
    assert aligned(table[:64], torch.int8).data_ptr() == table.data_ptr()  # kept: no second copy in memory
    shifted = aligned(table[1:65], torch.int8)
    assert shifted.data_ptr() % 64 == 0 and torch.equal(shifted, table[1:65])
