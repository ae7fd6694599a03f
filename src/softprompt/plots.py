"""Pictures: a prompt among the vocabulary (`inspect --plot`), and comparison charts (`compare`, its scale chart).

matplotlib is imported inside each function, with the non-interactive Agg
backend, so importing this module costs nothing and no display is needed.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from pathlib import Path

import torch

from .fileio import atomic_path
from .inspect_prefix import PrefixInspection
from .inspect_prompt import Inspection
from .models import BaseModel
from .prompt import BasePrompt, frequent_token_ids
from .vocab import cosine_matrix, token_text, vocabulary_embeddings

VOCAB_SAMPLE = 3000  # frequent tokens drawn as the grey background of the projection
HEATMAP_COLUMNS = 24


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def pca_2d(points: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """Project `points` and `others` on the first two principal axes of `points`."""
    mean = points.mean(dim=0, keepdim=True)
    _, _, v = torch.linalg.svd(points - mean, full_matrices=False)
    axes = v[:2].T
    return [(x - mean) @ axes for x in (points, *others)]


def plot_inspection(
    prompt: BasePrompt, base: BaseModel, inspection: Inspection | PrefixInspection, path: str | Path
) -> Path:
    """Three panels: 2-D projection, norms against the vocabulary, cosine heat map (a deep prompt: its layers)."""
    if isinstance(inspection, PrefixInspection):
        return plot_prefix_inspection(inspection, path)
    plt = _pyplot()
    vocab = vocabulary_embeddings(base)
    emb = prompt.embeddings.detach().float().cpu()
    fig = plt.figure(figsize=(15, 11), constrained_layout=True)
    grid = fig.add_gridspec(2, 2, height_ratios=(1.15, 1))
    _draw_projection(fig.add_subplot(grid[0, 0]), base, prompt, emb, vocab, inspection)
    _draw_norms(fig.add_subplot(grid[0, 1]), vocab, emb, prompt.initial)
    _draw_heatmap(fig, fig.add_subplot(grid[1, :]), base, emb, vocab, inspection)
    summary = textwrap.fill(inspection.summary, width=150)
    fig.suptitle(
        f"Soft prompt ({emb.shape[0]} x {emb.shape[1]}) in {base.name}'s embedding space\n{summary}", fontsize=11
    )
    return _save(fig, path)


def _draw_projection(ax, base, prompt, emb, vocab, inspection) -> None:
    sample_ids = frequent_token_ids(base, min(VOCAB_SAMPLE, vocab.shape[0]))
    label_ids = [(lab.label, lab.words, lab.token_ids) for lab in inspection.labels]
    label_vecs = torch.stack([vocab[ids].mean(dim=0) for _, _, ids in label_ids]) if label_ids else emb[:0]
    initial = prompt.initial if prompt.initial is not None and prompt.initial.shape == emb.shape else None
    extra = [emb, label_vecs] + ([initial.float()] if initial is not None else [])
    projected = pca_2d(vocab[sample_ids], *extra)
    bg, pts, labs = projected[:3]
    ax.scatter(bg[:, 0], bg[:, 1], s=4, c="#bbbbbb", alpha=0.5, label=f"{len(sample_ids)} frequent tokens")
    if initial is not None:
        start = projected[3]
        for a, b in zip(start, pts):
            ax.annotate("", xy=b.tolist(), xytext=a.tolist(), arrowprops=dict(arrowstyle="->", color="#e8a0a0", lw=0.8))
        ax.scatter(start[:, 0], start[:, 1], s=14, c="#e8a0a0", label="prompt before training")
    ax.scatter(
        pts[:, 0], pts[:, 1], s=40, c="#d62728", edgecolors="black", linewidths=0.5, label="prompt tokens", zorder=3
    )
    for i, (x, y) in enumerate(pts.tolist()):
        ax.annotate(str(i), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points", color="#8b0000")
    colours = ("#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b")
    for j, ((label, words, _), (x, y)) in enumerate(zip(label_ids, labs.tolist())):
        c = colours[j % len(colours)]
        ax.scatter([x], [y], s=160, marker="*", c=c, edgecolors="black", linewidths=0.6, zorder=4)
        # Label words often sit close together: stagger their names vertically so they stay legible.
        ax.annotate(f"{words.strip()} ({label})", (x, y), fontsize=9, fontweight="bold", color=c,
                    xytext=(8, -12 - 13 * j), textcoords="offset points",
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.7))  # fmt: skip
    ax.set_title("PCA of frequent-token embeddings; prompt tokens (numbered) and label words (stars)", fontsize=10)
    ax.set_xlabel("principal axis 1")
    ax.set_ylabel("principal axis 2")
    ax.legend(loc="best", fontsize=8, markerscale=1.5)


def _draw_norms(ax, vocab, emb, initial) -> None:
    norms = vocab.norm(dim=1)
    ax.hist(norms.numpy(), bins=80, color="#bbbbbb", label="vocabulary embedding norms")
    if initial is not None and initial.shape == emb.shape:
        for i, n in enumerate(initial.float().norm(dim=1).tolist()):
            ax.axvline(n, color="#e8a0a0", lw=0.8, ls="--", label="prompt before training" if i == 0 else None)
    for i, n in enumerate(emb.norm(dim=1).tolist()):
        ax.axvline(n, color="#d62728", lw=1.0, label="prompt tokens" if i == 0 else None)
    ax.set_yscale("log")
    ax.set_xlabel("L2 norm")
    ax.set_ylabel("vocabulary tokens (log)")
    ax.set_title("Prompt-token norms against the vocabulary's", fontsize=10)
    ax.legend(fontsize=8)


def heatmap_columns(base: BaseModel, inspection: Inspection, limit: int = HEATMAP_COLUMNS) -> list[tuple[int, str]]:
    """Label-word tokens first, then each virtual token's nearest neighbours, without repeats."""
    columns: dict[int, str] = {}
    for lab in inspection.labels:
        for j in lab.token_ids:
            columns.setdefault(j, f"[{lab.label}] {shown_token(token_text(base, j))}")
    for rank in range(inspection.top_k):  # nearest first, then second nearest, ...
        for tok in inspection.tokens:
            if len(columns) >= limit:
                break
            n = tok.neighbours[rank]
            columns.setdefault(n.token_id, shown_token(n.token))
    return list(columns.items())[:limit]


def shown_token(text: str, width: int = 16) -> str:
    """A token as a short one-line label: quoted, escapes visible, long ones clipped."""
    # Runs of spaces (indentation tokens) would read as gaps: show them as ␣×N.
    shown = repr(re.sub(r" {2,}", lambda m: f"␣×{len(m.group())}", text))
    return shown if len(shown) <= width else shown[: width - 2] + "…'"


def _draw_heatmap(fig, ax, base, emb, vocab, inspection) -> None:
    columns = heatmap_columns(base, inspection)
    ids = torch.tensor([j for j, _ in columns])
    sims = cosine_matrix(emb, vocab[ids]).numpy()
    bound = max(abs(float(sims.min())), abs(float(sims.max())), 1e-6)
    image = ax.imshow(sims, aspect="auto", cmap="RdBu_r", vmin=-bound, vmax=bound)
    ax.set_xticks(range(len(columns)), [name for _, name in columns], rotation=55, ha="right", fontsize=8)
    ax.set_yticks(range(emb.shape[0]), [str(i) for i in range(emb.shape[0])], fontsize=7)
    n_label = sum(len(lab.token_ids) for lab in inspection.labels)
    if n_label:
        ax.axvline(n_label - 0.5, color="black", lw=1.5)
    ax.set_ylabel("virtual token")
    ax.set_title("Cosine similarity: prompt tokens x label words (left of the line) and nearest tokens", fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.025, pad=0.01)


def plot_prefix_inspection(inspection: PrefixInspection, path: str | Path) -> Path:
    """A deep prompt's layers: key/value norms against the model's own, and how far each layer moved."""
    plt = _pyplot()
    layers = [f.layer for f in inspection.layers]
    fig, (norms, moved) = plt.subplots(1, 2, figsize=(14, 4.8), constrained_layout=True)
    for attr, colour, name in (("key", "#d62728", "keys"), ("value", "#1f77b4", "values")):
        norms.plot(layers, [getattr(f, f"{attr}_norm") for f in inspection.layers], color=colour, lw=1.6,
                   label=f"prompt {name}")  # fmt: skip
        norms.plot(layers, [getattr(f, f"model_{attr}_norm") for f in inspection.layers], color=colour, lw=1,
                   ls="--", label=f"model's own {name} (frequent tokens)")  # fmt: skip
    norms.set_xlabel("layer")
    norms.set_ylabel("mean L2 norm per virtual token")
    norms.set_title("Key/value norms per layer", fontsize=10)
    norms.legend(fontsize=8)
    if inspection.tokens:
        width = 0.4
        moved.bar([x - width / 2 for x in layers], [100 * f.key_moved for f in inspection.layers], width,
                  color="#d62728", label="keys")  # fmt: skip
        moved.bar([x + width / 2 for x in layers], [100 * f.value_moved for f in inspection.layers], width,
                  color="#1f77b4", label="values")  # fmt: skip
        moved.set_ylabel("relative change from the initial value, %")
        moved.legend(fontsize=8)
    else:
        moved.text(0.5, 0.5, "no initial value in the file", ha="center", va="center", transform=moved.transAxes)
    moved.set_xlabel("layer")
    moved.set_title("How far each layer moved in training", fontsize=10)
    for ax in (norms, moved):
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(textwrap.fill(inspection.summary, width=150), fontsize=10)
    return _save(fig, path)


# -- comparison charts ----------------------------------------------------------


def plot_bars(
    path: str | Path,
    names: Sequence[str],
    panels: Sequence[tuple[str, Sequence[float | None], bool]],
    title: str,
) -> Path:
    """One bar chart per (title, values, log scale) panel, methods on the x axis; None = not measured."""
    plt = _pyplot()
    cols = 2 if len(panels) == 4 else min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.8 * rows), constrained_layout=True, squeeze=False)
    colours = ("#7f7f7f", "#bcbd22", "#d62728", "#1f77b4", "#9467bd", "#2ca02c", "#ff7f0e")
    for ax, (panel_title, values, log) in zip(axes.flat, panels):
        use_log = log and any(v and v > 0 for v in values)
        # A log axis cannot show 0: such bars get height 1 (the axis floor) and are labelled "0".
        shown = [0.0 if v is None else max(float(v), 1.0) if use_log else float(v) for v in values]
        bars = ax.bar(range(len(names)), shown, color=[colours[i % len(colours)] for i in range(len(names))])
        for bar, v in zip(bars, values):
            text = "n/a" if v is None else _short(v)
            ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                        fontsize=8, xytext=(0, 2), textcoords="offset points")  # fmt: skip
        if use_log:
            ax.set_yscale("log")
        ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=9)
        ax.set_title(panel_title, fontsize=10)
        ax.margins(y=0.15)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def _short(v: float) -> str:
    v = float(v)
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= size:
            return f"{v / size:.3g}{unit}"
    return f"{v:.3g}"


def plot_against(
    path: str | Path,
    x: Sequence[float],
    panels: Sequence[tuple[str, dict[str, Sequence[float | None]]]],
    xlabel: str,
    title: str,
) -> Path:
    """One panel per (title, {name: values}); each name's values as a line over `x` (log scale); None = missing."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.6), constrained_layout=True, squeeze=False)
    for ax, (panel_title, series) in zip(axes.flat, panels):
        for name, ys in series.items():
            points = [(a, b) for a, b in zip(x, ys) if b is not None]
            if points:
                ax.plot(*zip(*points), marker="o", lw=1.4, label=name)
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_title(panel_title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def plot_lines(path: str | Path, curves: dict[str, Sequence[float]], title: str, xlabel: str, ylabel: str) -> Path:
    """One line per named curve (e.g. training loss per method), x = 1, 2, ..."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), constrained_layout=True)
    for name, ys in curves.items():
        ax.plot(range(1, len(ys) + 1), list(ys), label=name, lw=1.4)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    return _save(fig, path)
