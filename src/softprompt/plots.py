"""Charts: matplotlib with the non-interactive Agg backend, written atomically (compare's charts live here).

matplotlib is imported inside each function, so importing this module costs nothing and no display is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .fileio import atomic_path


def pyplot():
    """matplotlib.pyplot on the Agg backend (an extra: `require("plots", ...)` first)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path) -> Path:
    """Write `fig` atomically (the format from the suffix, png by default) and close it."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return path


# -- comparison charts ----------------------------------------------------------


def plot_bars(
    path: str | Path,
    names: Sequence[str],
    panels: Sequence[tuple[str, Sequence[float | None], bool]],
    title: str,
) -> Path:
    """One bar chart per (title, values, log scale) panel, methods on the x axis; None = not measured."""
    plt = pyplot()
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
    return save_figure(fig, path)


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
    plt = pyplot()
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
    return save_figure(fig, path)


def plot_lines(path: str | Path, curves: dict[str, Sequence[float]], title: str, xlabel: str, ylabel: str) -> Path:
    """One line per named curve (e.g. training loss per method), x = 1, 2, ..."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), constrained_layout=True)
    for name, ys in curves.items():
        ax.plot(range(1, len(ys) + 1), list(ys), label=name, lw=1.4)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    return save_figure(fig, path)
