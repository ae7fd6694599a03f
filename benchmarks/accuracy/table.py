"""A sweep's cells summed up: mean and spread over seeds per (task, method, budget), and Markdown tables.

Spread is the sample standard deviation over seeds (0 for one seed). Steps to
plateau: the first dev evaluation whose main metric (accuracy; token F1 for
text to text) is within PLATEAU_TOLERANCE of the best that run reached, mean over
seeds; with evaluations every steps/evals steps it is that coarse.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

PLATEAU_TOLERANCE = 0.01
# Issue 34's bar against the reference (LoRA r=8), on seed means: accuracy within 1 point, macro-F1 within
# 0.01, and no class recalled at under half the reference's recall of it.
BAR_POINTS, BAR_F1, BAR_RECALL_SHARE = 1.0, 0.01, 0.5


def _stats(values: Sequence[float]) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "sd": None, "n": 0}
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.mean(values), "sd": sd, "min": min(values), "max": max(values), "n": len(values)}


def plateau_step(curve: Sequence[dict], metric: str, tolerance: float = PLATEAU_TOLERANCE) -> int | None:
    points = [(p["step"], p[metric]) for p in curve if metric in p]
    if not points:
        return None
    best = max(v for _, v in points)
    return next(step for step, v in points if v >= best - tolerance)


def summarize(cells: Sequence[dict]) -> list[dict]:
    """One row per (task, method, budget), in the cells' order."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for cell in cells:
        groups.setdefault((cell["task"], cell["method"], cell["budget"]), []).append(cell)
    rows = []
    for (task, method, budget), group in groups.items():
        metric = "accuracy" if "accuracy" in group[0]["test"] else "token_f1"
        row = {
            "task": task,
            "method": method,
            "title": group[0]["title"],
            "budget": budget,
            "seeds": sorted(c["seed"] for c in group),
            "steps": _stats([c["steps"] for c in group]),
            "trainable_parameters": group[0]["trainable_parameters"],
            "train_seconds": _stats([c["train_seconds"] for c in group]),
            "examples_per_s": _stats([c["examples_per_s"] for c in group]),
            "plateau_step": _stats([plateau_step(c["curve"], metric) for c in group]),
            "best_step": _stats([c["best_step"] for c in group]),
            "load_average": _stats([x for c in group for x in c.get("load_average", [])]),
        }
        for key in ("accuracy", "macro_f1", "exact_match", "token_f1"):
            if key in group[0]["test"]:
                row[key] = _stats([c["test"][key] for c in group])
        if "per_label" in group[0]["test"]:
            labels = sorted({label for c in group for label in c["test"]["per_label"]})
            row["recall"] = {
                label: _stats([c["test"]["per_label"].get(label, {}).get("recall") for c in group]) for label in labels
            }
        row["decision"] = "balanced" if any(c["test"].get("bias") for c in group) else "argmax"
        for rule in group[0].get("test_rules", {}):
            row[f"{rule}_accuracy"] = _stats([c["test_rules"][rule]["accuracy"] for c in group])
            row[f"{rule}_macro_f1"] = _stats([c["test_rules"][rule]["macro_f1"] for c in group])
        rows.append(row)
    return rows


def _pm(stat: dict | None, *, percent: bool = False, digits: int = 3) -> str:
    if not stat or stat.get("mean") is None:
        return "-"
    if percent:
        return f"{100 * stat['mean']:.1f} ± {100 * stat['sd']:.1f}"
    return f"{stat['mean']:.{digits}f} ± {stat['sd']:.{digits}f}"


def _num(stat: dict | None) -> str:
    return "-" if not stat or stat.get("mean") is None else f"{stat['mean']:.0f}"


def markdown(rows: Sequence[dict], *, header: str = "") -> str:
    lines = [header] if header else []
    lines += [
        "| task | method | budget | seeds | steps | params | test acc % | macro-F1 | per-class recall | "
        "plateau step | ex/s | train s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "accuracy" in r:
            quality, f1 = _pm(r["accuracy"], percent=True), _pm(r["macro_f1"])
        else:
            quality, f1 = f"EM {_pm(r['exact_match'], percent=True)}", f"tok-F1 {_pm(r['token_f1'])}"
        recall = ", ".join(f"{k} {v['mean']:.2f}" for k, v in r.get("recall", {}).items() if v["mean"] is not None)
        lines.append(
            f"| {r['task']} | {r['method']} | {r['budget']} | {len(r['seeds'])} | {_num(r['steps'])} | "
            f"{r['trainable_parameters']:,} | {quality} | {f1} | {recall or '-'} | {_num(r['plateau_step'])} | "
            f"{_pm(r['examples_per_s'], digits=2)} | {_num(r['train_seconds'])} |"
        )
    rules = [r for r in rows if "prior_macro_f1" in r]
    if rules:
        lines += [
            "",
            "Decision rules on the same test scores (no retraining). The table above shows what the method "
            "answers (`decision`: `balanced` = the prompt's stored label bias, softprompt/balance.py; `argmax` = "
            "none); `argmax` = no bias; `prior` = minus log training prior (the full balanced decision); "
            "`dev_bias` = per-label bias fitted on dev for macro-F1.",
            "",
            "| task | method | budget | decision | macro-F1 argmax | macro-F1 prior | macro-F1 dev_bias | "
            "acc % argmax | acc % prior | acc % dev_bias |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rules:
            argmax_f1, argmax_acc = r.get("argmax_macro_f1", r["macro_f1"]), r.get("argmax_accuracy", r["accuracy"])
            lines.append(
                f"| {r['task']} | {r['method']} | {r['budget']} | {r['decision']} | {_pm(argmax_f1)} | "
                f"{_pm(r['prior_macro_f1'])} | {_pm(r['dev_bias_macro_f1'])} | {_pm(argmax_acc, percent=True)} | "
                f"{_pm(r['prior_accuracy'], percent=True)} | {_pm(r['dev_bias_accuracy'], percent=True)} |"
            )
    return "\n".join(lines) + "\n"


def bar_rows(rows: Sequence[dict], reference: str) -> list[dict]:
    """Each classification row against the same task and budget's `reference` row: the bar, met or not."""
    refs = {(r["task"], r["budget"]): r for r in rows if r["method"] == reference}
    out = []
    for r in rows:
        ref = refs.get((r["task"], r["budget"]))
        if r["method"] == reference or ref is None or "accuracy" not in r or "recall" not in r:
            continue
        points = 100 * (r["accuracy"]["mean"] - ref["accuracy"]["mean"])
        f1 = r["macro_f1"]["mean"] - ref["macro_f1"]["mean"]
        starved = [
            label
            for label, stat in r["recall"].items()
            if stat["mean"] is not None
            and (ref_stat := ref.get("recall", {}).get(label)) is not None
            and ref_stat["mean"] is not None
            and stat["mean"] < BAR_RECALL_SHARE * ref_stat["mean"]
        ]
        out.append(
            {
                "task": r["task"],
                "budget": r["budget"],
                "method": r["method"],
                "seeds": (len(r["seeds"]), len(ref["seeds"])),
                "points": points,
                "macro_f1": f1,
                "starved": starved,
                "met": points >= -BAR_POINTS and f1 >= -BAR_F1 and not starved,
            }
        )
    return out


def bar_markdown(rows: Sequence[dict], reference: str) -> str:
    checked = bar_rows(rows, reference)
    if not checked:
        return ""
    lines = [
        f"The bar against {reference} (means over seeds): accuracy within {BAR_POINTS:g} point, macro-F1 within "
        f"{BAR_F1:g}, no class recalled at under {BAR_RECALL_SHARE:g} of {reference}'s recall of it.",
        "",
        f"| task | budget | method | seeds (method / {reference}) | accuracy gap, points | macro-F1 gap | "
        "classes under the recall bar | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for b in checked:
        lines.append(
            f"| {b['task']} | {b['budget']} | {b['method']} | {b['seeds'][0]} / {b['seeds'][1]} | "
            f"{b['points']:+.1f} | {b['macro_f1']:+.3f} | {', '.join(b['starved']) or 'none'} | "
            f"{'yes' if b['met'] else '**no**'} |"
        )
    return "\n".join(lines) + "\n"
