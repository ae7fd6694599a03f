"""How sure a gap between two methods is: a paired bootstrap over the test examples.

Both methods were scored on the same test examples, so a draw of examples (with
replacement, the same draw for both) shows how much the gap owes to which
examples the test split happens to hold. Inside each draw every method's figure is
its mean over its seeds, so the seed spread is folded in too. The interval is the
draws' percentiles (Efron's percentile bootstrap). On 1,000 test examples a gap of
one point is about the width of that noise: a bar of "within 1 point" needs the
interval beside the mean to be read at all.

Macro-F1 follows `metrics.classification_report`: the mean F1 over the labels seen
in a draw's gold or predictions, an F1 with a zero denominator counting as 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ..data import builtin_dataset

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
    scores_a: torch.Tensor,
    scores_b: torch.Tensor,
    gold: torch.Tensor,
    *,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Gap a - b in accuracy and macro-F1, each method averaged over its seeds, with a paired bootstrap interval.

    `scores_*`: [seeds, N, K] label scores (any number of seeds each); `gold`: [N] label indices.
    Returns {"accuracy": {"gap", "low", "high"}, "macro_f1": {...}}.
    """
    if scores_a.shape[1:] != scores_b.shape[1:] or scores_a.shape[1] != gold.shape[0]:
        raise ValueError(f"scores {tuple(scores_a.shape)} and {tuple(scores_b.shape)} for {gold.shape[0]} gold labels")
    n, num_labels = gold.shape[0], scores_a.shape[-1]
    pred_a, pred_b = scores_a.argmax(-1), scores_b.argmax(-1)
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


def gaps_against(cells: Sequence[dict], reference: str, gold: Mapping[str, Sequence[int]], **bootstrap) -> list[dict]:
    """Each other method's gap to `reference` per (task, budget), from cells holding their test label scores.

    `gold`: task -> the test split's gold label indices, in the order the cells scored them.
    """
    groups: dict[tuple[str, str], dict[str, list[dict]]] = {}
    for cell in cells:
        if "test_scores" in cell and len(cell["test_scores"]) == len(gold.get(cell["task"], ())):
            groups.setdefault((cell["task"], cell["budget"]), {}).setdefault(cell["method"], []).append(cell)
    rows = []
    for (task, budget), methods in groups.items():
        if reference not in methods:
            continue
        labels, base = torch.tensor(gold[task]), _scores(methods[reference])
        for method, group in methods.items():
            if method != reference:
                gap = paired_gap(_scores(group), base, labels, **bootstrap)
                rows.append({"task": task, "budget": budget, "method": method, "reference": reference, **gap})
    return rows


def gold_indices(cells: Sequence[dict]) -> dict[str, list[int]]:
    """Each built-in classification task's test gold label indices, in the order its cells scored them.

    A cell scores the first `test_examples` of the test split (all when 0), its label
    scores' columns in the data set's label order.
    """
    gold = {}
    for cell in cells:
        if "test_scores" in cell and cell["task"] not in gold:
            dataset = builtin_dataset(cell["task"])
            limit = cell["config"]["test_examples"] or None
            index = {label: i for i, label in enumerate(dataset.labels)}
            gold[cell["task"]] = [index[e.output] for e in dataset.load().test[:limit]]
    return gold


def _scores(group: Sequence[dict]) -> torch.Tensor:
    return torch.tensor([c["test_scores"] for c in sorted(group, key=lambda c: c["seed"])], dtype=torch.float32)


def gaps_markdown(rows: Sequence[dict], *, level: float = LEVEL, resamples: int = RESAMPLES) -> str:
    lines = [
        f"Gap to the reference on the same test examples (method minus reference; {level:.0%} paired bootstrap "
        f"interval over test examples, {resamples} draws, each method's mean over its seeds):",
        "",
        "| task | budget | method | reference | accuracy gap, points | macro-F1 gap |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        acc, f1 = r["accuracy"], r["macro_f1"]
        lines.append(
            f"| {r['task']} | {r['budget']} | {r['method']} | {r['reference']} | "
            f"{100 * acc['gap']:+.1f} [{100 * acc['low']:+.1f}, {100 * acc['high']:+.1f}] | "
            f"{f1['gap']:+.3f} [{f1['low']:+.3f}, {f1['high']:+.3f}] |"
        )
    return "\n".join(lines) + "\n"
