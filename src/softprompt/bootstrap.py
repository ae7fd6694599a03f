"""How sure a gap between two methods is: a paired bootstrap over the test examples.

Both methods were scored on the same test examples, so a draw of examples (with
replacement, the same draw for both) shows how much the gap owes to which
examples the test split happens to hold. Inside each draw every method's figure is
its mean over its seeds, so a spread over seeds is folded in too when there are
several. The interval is the draws' percentiles (Efron's percentile bootstrap).
On 1,000 test examples a gap of one point is about the width of that noise, so a
bar of "within 1 point" needs the interval beside the mean to be read at all.

Macro-F1 follows `metrics.classification_report`: the mean F1 over the labels seen
in a draw's gold or predictions, an F1 with a zero denominator counting as 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

RESAMPLES = 2000
LEVEL = 0.95
_CHUNK = 250  # draws scored at once: bounds memory to about seeds x 250 x N booleans per label


def macro_f1_of_draws(pred: torch.Tensor, gold: torch.Tensor, draws: torch.Tensor, num_labels: int) -> torch.Tensor:
    """[seeds, draws] macro-F1 of predictions `pred` [seeds, N] against `gold` [N] on each draw [draws, N] of indices."""
    p, g = pred[:, draws], gold[draws].unsqueeze(0)  # [S, B, n], [1, B, n]
    total = torch.zeros(p.shape[:2], dtype=torch.float64)
    seen = torch.zeros(p.shape[:2], dtype=torch.float64)
    for k in range(num_labels):
        is_pred, is_gold = p == k, g == k
        tp = (is_pred & is_gold).sum(-1)
        wrong = (is_pred ^ is_gold).sum(-1)  # false positives and false negatives
        denominator = 2 * tp + wrong
        total += torch.where(denominator > 0, 2 * tp / denominator.clamp(min=1), 0.0)
        seen += (denominator > 0).double()
    return total / seen.clamp(min=1)


def paired_gap(
    pred_a: torch.Tensor,
    pred_b: torch.Tensor,
    gold: torch.Tensor,
    num_labels: int,
    *,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Gap a - b in accuracy and macro-F1, each method averaged over its seeds, with a paired bootstrap interval.

    `pred_*`: [seeds, N] predicted label indices (any number of seeds each); `gold`: [N] label indices.
    Returns {"accuracy": {"gap", "low", "high"}, "macro_f1": {...}}.
    """
    if pred_a.shape[1:] != gold.shape or pred_b.shape[1:] != gold.shape:
        raise ValueError(f"predictions {tuple(pred_a.shape)} and {tuple(pred_b.shape)} for {gold.shape[0]} gold labels")
    n = gold.shape[0]
    right = (pred_a == gold).double().mean(0) - (pred_b == gold).double().mean(0)  # [N] per-example accuracy gap
    generator = torch.Generator().manual_seed(seed)
    accuracy, f1 = [], []
    for start in range(0, resamples, _CHUNK):
        draws = torch.randint(n, (min(_CHUNK, resamples - start), n), generator=generator)
        accuracy.append(right[draws].mean(-1))
        f1.append(
            macro_f1_of_draws(pred_a, gold, draws, num_labels).mean(0)
            - macro_f1_of_draws(pred_b, gold, draws, num_labels).mean(0)
        )
    whole = torch.arange(n).unsqueeze(0)
    observed = {
        "accuracy": float(right.mean()),
        "macro_f1": float(
            macro_f1_of_draws(pred_a, gold, whole, num_labels).mean()
            - macro_f1_of_draws(pred_b, gold, whole, num_labels).mean()
        ),
    }
    tail = (1 - level) / 2
    out = {}
    for name, values in (("accuracy", torch.cat(accuracy)), ("macro_f1", torch.cat(f1))):
        low, high = torch.quantile(values, torch.tensor([tail, 1 - tail], dtype=values.dtype)).tolist()
        out[name] = {"gap": observed[name], "low": low, "high": high}
    return out


def paired_label_gap(
    pred_a: Sequence[Sequence[str]],
    pred_b: Sequence[Sequence[str]],
    gold: Sequence[str],
    labels: Sequence[str],
    **bootstrap,
) -> dict[str, dict[str, float]]:
    """`paired_gap` of predicted label names, one list per seed, against the gold names."""
    index = {label: i for i, label in enumerate(dict.fromkeys([*labels, *gold]))}  # a gold outside `labels` counts

    def ids(names: Sequence[str]) -> list[int]:
        return [index.setdefault(name, len(index)) for name in names]

    a = torch.tensor([ids(p) for p in pred_a])
    b = torch.tensor([ids(p) for p in pred_b])
    return paired_gap(a, b, torch.tensor(ids(gold)), len(index), **bootstrap)


def gap_text(gap: dict[str, float], *, points: bool = False) -> str:
    """ "+1.2 [-0.3, +2.6]": a gap and its interval, in percentage points when `points` (accuracy)."""
    scale, digits = (100, 1) if points else (1, 3)
    gap_, low, high = (scale * gap[k] for k in ("gap", "low", "high"))
    return f"{gap_:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"
