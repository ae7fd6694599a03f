"""Several seeds: one comparison per seed, then each method's mean and spread, and gaps that fold the seeds in.

A trained method's accuracy moves by a point or more from one seed to the next on a
small model (prompt tuning's more than LoRA's), so one seed cannot tell a gap of a
point from none. `softprompt compare --seed 0 --seed 1 --seed 2` runs the same
comparison once per seed into `OUT/seed-<s>/` (each a whole report, resumable like a
single comparison), then writes `seeds.json` and `seeds.md`: each method's mean ± sd
over the seeds (accuracy, macro-F1, training time), and its gap to the method with
the best mean accuracy, with a paired bootstrap interval over the test examples in
which each method counts as its mean over the seeds (`bootstrap.paired_gap`).

The seed decides the training batches, the initial adapters and few-shot's
demonstrations, never the test examples: every seed scores the same test subset
(a data file without its own test split is cut 90/10 once, with the first seed), so
the gaps are paired.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from ..errors import SoftPromptError
from ..fileio import write_json_atomic, write_text_atomic
from ..models import BaseModel, load_base_model
from .config import CompareConfig
from .report import gap_table, human_seconds, paired_gaps
from .run import run_compare

SEEDS_JSON = "seeds.json"
SEEDS_MD = "seeds.md"
SPREAD = (("accuracy", "test"), ("macro_f1", "test"), ("train_seconds", None))


def seed_folder(out: Path, seed: int) -> Path:
    return out / f"seed-{seed}"


def run_seeds(
    config: CompareConfig,
    seeds: Sequence[int],
    out: str | Path,
    *,
    resume: bool = False,
    show_progress: bool = True,
    base: BaseModel | None = None,
    log: Callable[[str], None] | None = None,
) -> dict:
    """`run_compare` once per seed (config.seed is ignored) on one base model, then the seeds summary; returns it."""
    if len(set(seeds)) != len(seeds) or len(seeds) < 2:
        raise SoftPromptError(f"--seed: give two or more different seeds, got {', '.join(map(str, seeds))}")
    out = Path(out)
    split_seed = seeds[0] if config.split_seed is None else config.split_seed
    if base is None:
        if log is not None:
            log(f"loading {config.model}")
        base = load_base_model(config.model, device=config.device, quantize=config.quantize)
    reports = {}
    for i, seed in enumerate(seeds, start=1):
        folder = seed_folder(out, seed)
        if log is not None:
            log(f"seed {i}/{len(seeds)}: {seed} -> {folder}")
        config_s = replace(config, seed=seed, split_seed=split_seed)
        reports[seed] = run_compare(config_s, folder, resume=resume, show_progress=show_progress, base=base, log=log)
    summary = build_seeds(reports)
    write_seeds(summary, out)
    return summary


def build_seeds(reports: dict[int, dict]) -> dict:
    """Mean and spread of each method's figures over the seeds' reports, and each method's gap to the best.

    The result has the keys the power-of-scale chart reads from a single report
    (`config`, `model`, `data`, `methods[].test`), so several models x several seeds compose.
    """
    first = next(iter(reports.values()))
    gold = first["data"]["test_gold"]
    if any(r["data"]["test_gold"] != gold for r in reports.values()):
        raise SoftPromptError("the seeds' comparisons scored different test examples: their gaps cannot be paired")
    methods, kept = [], {}
    for entry in first["methods"]:
        runs = {seed: _method(report, entry["method"]) for seed, report in reports.items()}
        per_seed = {str(seed): {name: _figure(m, name, part) for name, part in SPREAD} for seed, m in runs.items()}
        figures = {name: [f[name] for f in per_seed.values()] for name, _ in SPREAD}
        mean = {name: statistics.fmean(figures[name]) for name in ("accuracy", "macro_f1")}
        methods.append(
            {
                "method": entry["method"],
                "title": entry["title"],
                "test": mean,
                "spread": {name: _sd(values) for name, values in figures.items()},
                "train_seconds": statistics.fmean(figures["train_seconds"]),
                "per_seed": per_seed,
                "trainable_parameters": entry["trainable_parameters"],
                "storage_bytes": entry["storage_bytes"],
                "steps": entry["steps"],
            }
        )
        predictions = [m["test"].get("predictions") for m in runs.values()]
        if all(p is not None for p in predictions):  # results saved before predictions were kept have none
            kept[entry["method"]] = (mean["accuracy"], predictions)
    config = {k: v for k, v in first["config"].items() if k != "seed"}
    return {
        "config": {**config, "seeds": list(reports)},
        "model": first["model"],
        "data": {k: v for k, v in first["data"].items() if k != "test_gold"},
        "methods": methods,
        "gaps": paired_gaps(kept, gold, list(first["data"]["verbalizer"])),
    }


def _method(report: dict, name: str) -> dict:
    """A method's entry in one seed's report (every seed ran the same methods)."""
    return next(m for m in report["methods"] if m["method"] == name)


def _figure(method: dict, name: str, part: str | None) -> float:
    return method[part][name] if part else method[name]


def _sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _mean_sd(m: dict, name: str, percent: bool) -> str:
    mean, sd = m["test"][name], m["spread"][name]
    return f"{100 * mean:.1f} ± {100 * sd:.1f}%" if percent else f"{mean:.3f} ± {sd:.3f}"


def markdown(summary: dict) -> str:
    c, d = summary["config"], summary["data"]
    seeds = c["seeds"]
    lines = [
        f"# {c['model']} on {d['name']}: every method over {len(seeds)} seeds",
        "",
        f"The same comparison (task, budget of {c['steps']} steps of {c['batch_size']}, methods) ran once per seed "
        f"({', '.join(map(str, seeds))}); each seed's whole report is in its folder (`seed-<s>/report.md`). "
        f"Figures are the mean ± sd over the seeds, on the first {d['test_examples']} examples of the "
        f"{d['test_split_size']}-example test split, the same examples for every seed.",
        "",
        "| Method | Test accuracy | Test macro-F1 | Training time | Trainable parameters | Steps |",
        "|---|---|---|---|---|---|",
    ]
    for m in summary["methods"]:
        time = f"{human_seconds(m['train_seconds'])} ± {m['spread']['train_seconds']:.1f} s" if m["steps"] else "n/a"
        lines.append(
            f"| {m['title']} | {_mean_sd(m, 'accuracy', True)} | {_mean_sd(m, 'macro_f1', False)} | {time} "
            f"| {m['trainable_parameters']:,} | {m['steps']} |"
        )
    lines += ["", *gaps_section(summary), *_per_seed(summary)]
    return "\n".join(lines)


def gaps_section(summary: dict) -> list[str]:
    gaps = summary.get("gaps")
    if not gaps:
        return []
    n, s = summary["data"]["test_examples"], len(summary["config"]["seeds"])
    titles = {m["method"]: m["title"] for m in summary["methods"]}
    return gap_table(
        f"## How sure the differences are ({n} test examples, {s} seeds)",
        f"Each method minus {titles[gaps['reference']]} (the best mean accuracy here), each method counted as its "
        f"mean over the seeds, with a {gaps['level']:.0%} interval from a paired bootstrap over the test examples "
        f"({gaps['resamples']:,} draws). An interval that holds 0 is a difference these examples and seeds cannot "
        "tell from none.",
        gaps,
        titles,
    )


def _per_seed(summary: dict) -> list[str]:
    seeds = [str(s) for s in summary["config"]["seeds"]]
    lines = [
        "## Each seed",
        "",
        "Test accuracy / macro-F1.",
        "",
        "| Method | " + " | ".join(f"seed {s}" for s in seeds) + " |",
        "|---" * (len(seeds) + 1) + "|",
    ]
    for m in summary["methods"]:
        cells = []
        for s in seeds:
            f = m["per_seed"].get(s)
            cells.append("n/a" if f is None else f"{f['accuracy']:.1%} / {f['macro_f1']:.3f}")
        lines.append(f"| {m['title']} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def write_seeds(summary: dict, out: Path) -> list[Path]:
    write_json_atomic(out / SEEDS_JSON, summary)
    write_text_atomic(out / SEEDS_MD, markdown(summary))
    return [out / SEEDS_JSON, out / SEEDS_MD]
