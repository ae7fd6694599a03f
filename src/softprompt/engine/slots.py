"""Per-row key/value slots: sequences join and leave a running batch without copying the others' caches.

Each layer's keys (and values) live in one preallocated tensor [rows, kv_heads,
length, head_dim]. A running sequence owns one row (its slot) and its tokens sit
at their positions: a soft prompt's virtual tokens at 0..T-1, the input after
them, then what it generates. So:

- a forward over a contiguous range of rows (the decoding rows) attends over a
  view of these tensors, no copy; a forward over scattered rows (the few being
  prefilled) gathers just those rows;
- new keys are written in place at each row's own offsets (`use_rows` and
  `plan`, then the model's `update` calls);
- a row that leaves is replaced by moving one other row into its place
  (`copy_row`): one row copied, never the whole cache.

The tensors grow as rows join or a longer row arrives (`reserve`), never beyond
`max_bytes`: the engine asks `fits` before it admits a sequence, and one that
does not fit waits. Transformers sees this object as the model's `Cache`;
`update(keys, values, layer)` is all a decoder layer calls on it.
"""

from __future__ import annotations

import torch
from transformers import Cache

from ..families import Family
from ..forward import PrefixKV

LENGTH_STEP = 64  # lengths are reserved in multiples of this, so a slightly longer row rarely reallocates


class SlotCache(Cache):
    """Key/value rows for up to `max_bytes`; see the module docstring."""

    def __init__(self, family: Family, *, dtype: torch.dtype, device: torch.device, max_bytes: int, max_rows: int):
        super().__init__(layers=[])
        self.dtype, self.device, self.max_bytes, self.max_rows = dtype, device, max_bytes, max_rows
        shapes = [family.kv_shape(layer) for layer in range(family.num_layers)]
        element = torch.empty((), dtype=dtype).element_size()
        self.token_bytes = sum(2 * heads * dim * element for heads, dim in shapes)  # keys + values, every layer
        self._shapes = shapes
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self._rows: slice | torch.Tensor = slice(0, 0)
        self._write_at: torch.Tensor | None = None
        self._width = 0

    # -- capacity ---------------------------------------------------------------------

    @property
    def capacity(self) -> tuple[int, int]:
        """(rows, tokens per row) allocated now."""
        return (self.keys[0].shape[0], self.keys[0].shape[2]) if self.keys else (0, 0)

    @property
    def nbytes(self) -> int:
        rows, length = self.capacity
        return rows * length * self.token_bytes

    def fits(self, rows: int, length: int) -> bool:
        """Whether `rows` rows of `length` tokens each fit in max_bytes."""
        return rows * length * self.token_bytes <= self.max_bytes

    def reserve(self, rows: int, length: int, *, live: int) -> None:
        """Make room for `rows` rows of `length` tokens, keeping rows 0..live-1; the caller checked `fits`.

        Grows rows by doubling and lengths in steps of LENGTH_STEP (within max_bytes), so that rows
        joining one at a time rarely reallocate; a reallocation may also shrink the length to `length`.
        """
        have_rows, have_length = self.capacity
        if rows <= have_rows and length <= have_length:
            return
        grown = have_rows if rows <= have_rows else min(self.max_rows, max(rows, 2 * have_rows))
        rounded = _round_up(length, LENGTH_STEP)
        shapes = [(grown, rounded), (rows, rounded), (rows, length)]
        new_rows, new_length = next((r, n) for r, n in shapes if self.fits(r, n))
        keep = min(have_length, new_length)  # every live row's tokens: length covers the longest
        for store in (self.keys, self.values):
            for layer, (heads, dim) in enumerate(self._shapes):
                fresh = torch.zeros(new_rows, heads, new_length, dim, dtype=self.dtype, device=self.device)
                if layer < len(store):
                    fresh[:live, :, :keep] = store[layer][:live, :, :keep]
                    store[layer] = fresh
                else:
                    store.append(fresh)

    def clear(self) -> None:
        """Free the tensors (no row is live)."""
        self.keys, self.values = [], []

    # -- rows ---------------------------------------------------------------------------

    def write_prefix(self, row: int, prefix: PrefixKV) -> None:
        """A prompt's keys/values (batch 1, every slot real) into `row` at positions 0..T-1."""
        for layer in range(len(self._shapes)):
            for store, part in ((self.keys, prefix.keys), (self.values, prefix.values)):
                store[layer][row, :, : part[layer].shape[2]] = part[layer][0]

    def copy_row(self, source: int, target: int, length: int) -> None:
        """Row `source`'s first `length` tokens into row `target` (for compaction)."""
        for store in (*self.keys, *self.values):
            store[target, :, :length] = store[source, :, :length]

    def swap_rows(self, a: int, b: int, length: int) -> None:
        """Exchange rows `a` and `b` (their first `length` tokens)."""
        for store in (*self.keys, *self.values):
            held = store[a, :, :length].clone()
            store[a, :, :length] = store[b, :, :length]
            store[b, :, :length] = held

    # -- the model's view ------------------------------------------------------------------

    def use_rows(self, rows: slice | torch.Tensor) -> None:
        """The next forward runs `rows` (a range, or row indices), in this order."""
        self._rows = rows

    def plan(self, write_at: torch.Tensor, width: int) -> None:
        """The next forward writes query j of row i at slot write_at[i, j] and attends over each row's
        first `width` slots (forward.slot_hidden_states says so; `forward.SlottedCache`)."""
        self._write_at, self._width = write_at, width

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs):
        """Write this forward's keys/values at the planned slots; return the rows' keys/values [B, H, width, D]."""
        out = []
        for store, new in ((self.keys[layer_idx], key_states), (self.values[layer_idx], value_states)):
            new = new.to(store.dtype)
            if isinstance(self._rows, slice):
                rows = store[self._rows]  # a view: written in place, read without a copy
                rows.scatter_(2, self._write_at[:, None, :, None].expand(-1, new.shape[1], -1, new.shape[3]), new)
                out.append(rows[:, :, : self._width])
            else:  # the few scattered rows: write the new keys in place, then gather those rows
                store[self._rows[:, None], :, self._write_at] = new.transpose(1, 2)
                out.append(store[self._rows, :, : self._width])
        return out[0], out[1]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        # The engine always passes position ids and 4D masks, so the model never needs a length from the cache.
        return 0

    def __len__(self) -> int:
        return len(self._shapes)


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step
