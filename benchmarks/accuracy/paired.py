"""The sweep's gaps to a reference method, each with a paired bootstrap interval (bootstrap.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from softprompt.bootstrap import LEVEL, RESAMPLES, gap_text, paired_gap
from softprompt.data import builtin_dataset

from .variants import parse_variant


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
        truth, base = torch.tensor(gold[task]), _predictions(methods[reference])
        num_labels = len(methods[reference][0]["test_scores"][0])
        for method, group in methods.items():
            if method != reference:
                gap = paired_gap(_predictions(group), base, truth, num_labels, **bootstrap)
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
            dataset = builtin_dataset(parse_variant(cell["task"])[0])  # a variant keeps the task's test split
            limit = cell["config"]["test_examples"] or None
            index = {label: i for i, label in enumerate(dataset.labels)}
            gold[cell["task"]] = [index[e.output] for e in dataset.load().test[:limit]]
    return gold


def _predictions(group: Sequence[dict]) -> torch.Tensor:
    """[seeds, N] the labels the cells answered: the argmax of their test label scores plus each cell's own
    decision bias (`test.bias`, the trained prompt's; none: the plain argmax)."""
    rows = []
    for cell in sorted(group, key=lambda c: c["seed"]):
        scores = torch.tensor(cell["test_scores"])
        bias = cell.get("test", {}).get("bias")
        rows.append((scores if bias is None else scores + torch.tensor(bias, dtype=scores.dtype)).argmax(-1))
    return torch.stack(rows)


def gaps_markdown(rows: Sequence[dict], *, level: float = LEVEL, resamples: int = RESAMPLES) -> str:
    lines = [
        f"Gap to the reference on the same test examples (method minus reference; {level:.0%} paired bootstrap "
        f"interval over test examples, {resamples} draws, each method's mean over its seeds):",
        "",
        "| task | budget | method | reference | accuracy gap, points | macro-F1 gap |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['budget']} | {r['method']} | {r['reference']} | "
            f"{gap_text(r['accuracy'], points=True)} | {gap_text(r['macro_f1'])} |"
        )
    return "\n".join(lines) + "\n"
