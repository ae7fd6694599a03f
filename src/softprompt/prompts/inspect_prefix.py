"""Look inside a deep prompt: per-layer key/value norms, how far each layer moved, and against what scale.

The deep prompt's `inspect` hook (`PrefixPrompt.inspect`). A deep prompt (prefix.py) has no input vectors, so "nearest vocabulary token"
means nothing for it: its keys/values live in each layer's attention space,
not in the embedding space. What can be said:

- per layer, the mean L2 norm of the virtual tokens' keys and of their values,
  beside the same norms of the keys/values the model itself makes of its most
  frequent tokens (a reference scale: a prefix far above it dominates attention);
- per layer, how far the keys/values moved from their initial value (relative
  L2 change and cosine), when the file keeps the initial value, and which
  layers moved most: where training put the task;
- per virtual token, how far it moved over all layers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ..models import BaseModel
from .initialize import embed_ids, frequent_token_ids
from .prefix_layout import PrefixShape, prefix_of_embeddings

if TYPE_CHECKING:
    from .base import BasePrompt

REFERENCE_TOKENS = 64  # frequent tokens whose keys/values set the reference scale
SHOWN_LAYERS = 3  # layers named in the summary as moved most / least


@dataclass
class LayerFigures:
    layer: int
    key_norm: float  # mean over virtual tokens of the key's L2 norm (all key/value heads together)
    value_norm: float
    model_key_norm: float  # the same for the keys the model makes of frequent tokens
    model_value_norm: float
    key_moved: float | None = None  # |K - K0| / |K0| over the layer's keys
    value_moved: float | None = None
    key_cosine_to_initial: float | None = None
    value_cosine_to_initial: float | None = None

    @property
    def moved(self) -> float | None:
        return None if self.key_moved is None else (self.key_moved + self.value_moved) / 2


@dataclass
class TokenDrift:
    index: int
    moved: float  # relative L2 change of the token's keys/values over all layers


@dataclass
class PrefixInspection:
    prompt_shape: tuple[int, int, int, int]  # T, layers, key/value heads, head dim
    layers: list[LayerFigures]
    tokens: list[TokenDrift] = field(default_factory=list)  # empty without an initial value
    moved_most: list[int] = field(default_factory=list)  # layers by relative drift, most first
    init: str | None = None
    method: str = "prefix"
    summary: str = ""

    def to_dict(self) -> dict:
        out = asdict(self)
        for layer, figures in zip(out["layers"], self.layers):
            layer["moved"] = figures.moved
        return out

    def nearest_tokens(self, k: int) -> None:
        """Keys/values are not embeddings: they have no nearest vocabulary tokens."""
        return None

    def text(self) -> str:
        return format_text(self)

    def plot(self, prompt: BasePrompt, base: BaseModel, path: str | Path) -> Path:
        """Key/value norms against the model's own, and how far each layer moved (plots.py)."""
        from .plots import plot_layers  # matplotlib is an extra: loaded only to draw

        return plot_layers(self, path)


def inspect_layers(prompt: BasePrompt, shape: PrefixShape, base: BaseModel) -> PrefixInspection:
    """Per-layer norms of a deep prompt (its keys/values laid out as `shape`) against the model's own keys/values,
    and drift from the initial value."""
    prompt.check_compatible(base, where="the deep prompt", allow_mismatch=True, note_precision=False)
    keys, values = shape.layer_kv(prompt.weights)
    ref_keys, ref_values = shape.layer_kv(_reference_prefix(base))
    layers = [
        LayerFigures(
            layer=i,
            key_norm=_mean_token_norm(k),
            value_norm=_mean_token_norm(v),
            model_key_norm=_mean_token_norm(rk),
            model_value_norm=_mean_token_norm(rv),
        )
        for i, (k, v, rk, rv) in enumerate(zip(keys, values, ref_keys, ref_values))
    ]
    tokens: list[TokenDrift] = []
    initial = prompt.initial
    if initial is not None and initial.shape == prompt.weights.shape:
        start_keys, start_values = shape.layer_kv(initial)
        for figures, k, v, k0, v0 in zip(layers, keys, values, start_keys, start_values):
            figures.key_moved, figures.key_cosine_to_initial = _drift(k, k0)
            figures.value_moved, figures.value_cosine_to_initial = _drift(v, v0)
        now, start = prompt.weights.detach(), initial.float()
        change = (now - start).norm(dim=1) / start.norm(dim=1).clamp(min=1e-12)
        tokens = [TokenDrift(i, float(m)) for i, m in enumerate(change)]
    inspection = PrefixInspection(
        prompt_shape=(prompt.num_virtual_tokens, shape.layers, shape.kv_heads, shape.head_dim),
        layers=layers,
        tokens=tokens,
        moved_most=sorted(range(len(layers)), key=lambda i: -(layers[i].moved or 0)) if tokens else [],
        init=prompt.meta.init,
    )
    inspection.summary = summary_line(inspection)
    return inspection


def _reference_prefix(base: BaseModel) -> torch.Tensor:
    """The keys/values the model makes of its most frequent tokens, in a deep prompt's layout."""
    return prefix_of_embeddings(base, embed_ids(base, frequent_token_ids(base, REFERENCE_TOKENS)))


def _mean_token_norm(kv: torch.Tensor) -> float:
    """kv [heads, T, head_dim]: the mean over tokens of each token's norm over all heads."""
    return float(kv.float().permute(1, 0, 2).flatten(1).norm(dim=1).mean())


def _drift(now: torch.Tensor, start: torch.Tensor) -> tuple[float, float]:
    now, start = now.float().flatten(), start.float().flatten()
    return float((now - start).norm() / start.norm().clamp(min=1e-12)), float(F.cosine_similarity(now, start, dim=0))


def summary_line(inspection: PrefixInspection) -> str:
    t, n_layers, heads, dim = inspection.prompt_shape
    layers = inspection.layers
    scale = sum(f.key_norm + f.value_norm for f in layers) / sum(f.model_key_norm + f.model_value_norm for f in layers)
    head = (
        f"deep prompt: {t} virtual tokens x {n_layers} layers (keys and values of {heads} heads x {dim}); "
        f"its keys/values are {scale:.2f}x the norm of the model's own for frequent tokens"
    )
    if not inspection.moved_most:
        return head + "; no initial value in the file: drift unknown"
    shown = max(1, min(SHOWN_LAYERS, len(layers) // 2))  # most and least never name the same layer
    most = inspection.moved_most[:shown]
    least = inspection.moved_most[::-1][:shown]
    describe = lambda ids: ", ".join(f"{i} ({layers[i].moved:.0%})" for i in ids)  # noqa: E731
    return f"{head}; moved most in layers {describe(most)}, least in {describe(least)}"


def format_text(inspection: PrefixInspection) -> str:
    lines = [
        inspection.summary,
        "(nearest vocabulary tokens: not meaningful for keys/values, which are not embeddings)",
    ]
    has_drift = bool(inspection.tokens)
    header = f"{'layer':>5}  {'|key|':>7}  {'model':>7}  {'|value|':>7}  {'model':>7}"
    header += f"  {'key moved':>9}  {'value moved':>11}" if has_drift else ""
    lines.append(header)
    for f in inspection.layers:
        row = f"{f.layer:>5}  {f.key_norm:>7.3f}  {f.model_key_norm:>7.3f}  {f.value_norm:>7.3f}  {f.model_value_norm:>7.3f}"
        if has_drift:
            row += f"  {f.key_moved:>9.1%}  {f.value_moved:>11.1%}"
        lines.append(row)
    if has_drift:
        lines.append("virtual tokens, relative change over all layers: " + ", ".join(
            f"{tok.index}: {tok.moved:.0%}" for tok in inspection.tokens
        ))  # fmt: skip
    return "\n".join(lines)
