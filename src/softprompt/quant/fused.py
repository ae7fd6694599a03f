"""Projections that read one input run as one packed product while decoding (q/k/v, gate/up).

Decoding calls every linear once per token with one row, so each packed-kernel
call has a fixed cost beside reading its weights (the bf16 round trip of the
input, the call itself). transformers' decoder-only attention calls q_proj,
k_proj and v_proj on the same tensor, and its gated MLPs gate_proj and up_proj:
`fuse_shared_inputs` concatenates each such group's int8 tables into one (the
members' tables become views of it: no extra memory), and under no_grad the
first member called computes the product with the whole table, keeping it for
the others, which take their columns of it. The columns are the numbers each
member's own product gives (a matrix's rows are independent outputs), so
decoding's results do not change, only its speed.

A member uses the kept product only if it is called on that very tensor (same
object, unchanged since), and computes its own otherwise: a model that feeds
the members different inputs (cross-attention) gets right answers, only
slower. Training (autograd on) never uses it: each member runs its exact
tiles on its own rows. int8 only (int4's packed layout interleaves rows in
blocks of 64; not done yet), and only decoder-only models.
"""

from __future__ import annotations

import torch
from torch import nn

from .int8 import Int8Matrix

# Sibling projections that transformers' decoder-only models call on one input, in the order they are called.
GROUPS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


class SharedProduct:
    """x @ [W_1; W_2; ...].T for the input last given, handed out a member's columns at a time.

    Not an nn.Module on purpose: the members own the tables (as views), so state dicts, files
    and `quantized_modules` see exactly the unfused model.
    """

    def __init__(self, matrix: Int8Matrix, sizes: list[int]):
        self.matrix = matrix
        self.device = matrix.qweight.device  # a model moved after fusing leaves this copy behind: not used then
        self.bounds = [(sum(sizes[:i]), sum(sizes[: i + 1])) for i in range(len(sizes))]
        # (input, its version, product, members yet to take theirs): replaced whole, never mutated, so a
        # concurrent caller sees one consistent state (at worst it computes its own product).
        self._kept: tuple | None = None

    def columns(self, index: int, x: torch.Tensor) -> torch.Tensor | None:
        """Member `index`'s product with `x` [..., in] ([..., out_i]), or None where the kernel does not run."""
        kept = self._kept
        if kept is not None and kept[0] is x and kept[1] == x._version and index in kept[3]:
            product, waiting = kept[2], kept[3] - {index}
        elif x.device != self.device:
            return None
        else:
            product = self.matrix.kernel_matmul(x.reshape(-1, x.shape[-1]))
            if product is None:
                return None
            waiting = frozenset(range(len(self.bounds))) - {index}
        self._kept = (x, x._version, product, waiting) if waiting else None
        start, stop = self.bounds[index]
        return product[:, start:stop].contiguous().view(*x.shape[:-1], stop - start)


def fuse_shared_inputs(model: nn.Module) -> int:
    """Give each group of int8 projections on one input (GROUPS) one shared table; returns how many groups.

    Call it once the weights are loaded (a later load into a member replaces its table and ends its
    sharing). Encoder-decoders are left alone: their decoders' cross-attention feeds k/v another input.
    """
    if getattr(getattr(model, "config", None), "is_encoder_decoder", False):
        return 0
    groups = [g for parent in model.modules() for names in GROUPS if (g := _sharable(parent, names))]
    for matrices in groups:
        _share(matrices)
    return len(groups)


def _sharable(parent: nn.Module, names: tuple[str, ...]) -> list[Int8Matrix] | None:
    """The int8 matrices of `parent`'s projections `names`, if they can share one table."""
    from .linear import QuantizedLinear

    members = [parent._modules.get(name) for name in names]
    if not all(isinstance(m, QuantizedLinear) and not m.transposed for m in members):
        return None
    matrices = [m.matrix for m in members]
    if not all(type(m) is Int8Matrix and not m.qweight.is_meta for m in matrices):
        return None
    alike = len({(m.in_features, m.qweight.device, m.dtype) for m in matrices}) == 1
    distinct = len(set(map(id, matrices))) == len(matrices)
    return matrices if alike and distinct else None


def _share(matrices: list[Int8Matrix]) -> None:
    """One table for `matrices`, theirs views of it (each old table is freed as it is replaced)."""
    whole = Int8Matrix(sum(m.out_features for m in matrices), matrices[0].in_features, dtype=matrices[0].dtype)
    whole.qweight = torch.cat([m.qweight for m in matrices])
    whole.scales = torch.cat([m.scales for m in matrices])
    shared = SharedProduct(whole, [m.out_features for m in matrices])
    for i, (matrix, (start, stop)) in enumerate(zip(matrices, shared.bounds)):
        matrix.qweight, matrix.scales = whole.qweight[start:stop], whole.scales[start:stop]
        matrix.shared = (shared, i)
