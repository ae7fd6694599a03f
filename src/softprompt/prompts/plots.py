"""A prompt's inspection drawn (`inspect --plot`, the studio): a plain prompt among the vocabulary, a deep
prompt's layers. Each inspection's `plot` calls the function for its method here.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..models import BaseModel
from ..plots import pyplot, save_figure
from .initialize import frequent_token_ids
from .vocab import cosine_matrix, token_text, vocabulary_embeddings

if TYPE_CHECKING:
    from .base import BasePrompt

# The inspections (inspect_plain.Inspection, inspect_prefix.PrefixInspection) call these from their `plot`, so
# they are typed Any here: naming their classes would tie the modules in a loop.
Inspection = PrefixInspection = Any

VOCAB_SAMPLE = 3000  # frequent tokens drawn as the grey background of the projection
HEATMAP_COLUMNS = 24


def pca_2d(points: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """Project `points` and `others` on the first two principal axes of `points`."""
    mean = points.mean(dim=0, keepdim=True)
    _, _, v = torch.linalg.svd(points - mean, full_matrices=False)
    axes = v[:2].T
    return [(x - mean) @ axes for x in (points, *others)]


def plot_embeddings(prompt: BasePrompt, base: BaseModel, inspection: Inspection, path: str | Path) -> Path:
    """Three panels: 2-D projection, norms against the vocabulary, cosine heat map."""
    plt = pyplot()
    vocab = vocabulary_embeddings(base)
    emb = prompt.input_embeddings().detach().float().cpu()
    fig = plt.figure(figsize=(15, 11), constrained_layout=True)
    grid = fig.add_gridspec(2, 2, height_ratios=(1.15, 1))
    _draw_projection(fig.add_subplot(grid[0, 0]), base, prompt, emb, vocab, inspection)
    _draw_norms(fig.add_subplot(grid[0, 1]), vocab, emb, prompt.initial)
    _draw_heatmap(fig, fig.add_subplot(grid[1, :]), base, emb, vocab, inspection)
    summary = textwrap.fill(inspection.summary, width=150)
    fig.suptitle(
        f"Soft prompt ({emb.shape[0]} x {emb.shape[1]}) in {base.name}'s embedding space\n{summary}", fontsize=11
    )
    return save_figure(fig, path)


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


def plot_layers(inspection: PrefixInspection, path: str | Path) -> Path:
    """A deep prompt's layers: key/value norms against the model's own, and how far each layer moved."""
    plt = pyplot()
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
    return save_figure(fig, path)
