"""The power of scale: one comparison per model, then each method's accuracy and macro-F1 against model size.

Lester et al. (2021) found that prompt tuning catches up with fine-tuning as the
frozen model grows. `softprompt compare --model A --model B ...` measures that
claim on the models a user has: it runs the same comparison (same task, budget,
seeds and methods) once per model into `OUT/<n>-<model>/`, then writes
`scale.json`, `scale.md` (a table: models by size, methods' accuracy and
macro-F1) and `scale.png` (both figures against the number of parameters, log
scale). Each per-model comparison resumes like a single one. With several seeds, each
model's folder holds a seeds comparison (`seeds.py`) and the chart shows the means.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from ..fileio import write_json_atomic, write_text_atomic
from .config import CompareConfig
from .run import run_compare
from .seeds import run_seeds

SCALE_JSON = "scale.json"
SCALE_MD = "scale.md"
SCALE_PNG = "scale.png"
FIGURES = (("accuracy", "Test accuracy"), ("macro_f1", "Test macro-F1"))


def model_folder(out: Path, index: int, model: str) -> Path:
    """Where model number `index` (from 1) writes its comparison: a folder name made from its name or path."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(model.rstrip("/")).name or model).strip("-.") or "model"
    return out / f"{index}-{name}"


def run_scale(
    config: CompareConfig,
    models: Sequence[str],
    out: str | Path,
    *,
    seeds: Sequence[int] = (),
    resume: bool = False,
    show_progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict:
    """`run_compare` (or, given two or more `seeds`, `run_seeds`) for each of `models` (config.model is
    ignored), then the scale report; returns it."""
    out = Path(out)
    reports = {}
    for i, model in enumerate(models, start=1):
        folder = model_folder(out, i, model)
        if log is not None:
            log(f"model {i}/{len(models)}: {model} -> {folder}")
        config_i = replace(config, model=model)
        if len(seeds) > 1:
            reports[folder.name] = run_seeds(
                config_i, seeds, folder, resume=resume, show_progress=show_progress, log=log
            )
        else:
            reports[folder.name] = run_compare(config_i, folder, resume=resume, show_progress=show_progress, log=log)
    scale = build_scale(reports)
    write_scale(scale, out)
    return scale


def build_scale(reports: Mapping[str, dict]) -> dict:
    """Per model (smallest first): its folder, size and each method's test figures; the methods in report order."""
    titles: dict[str, str] = {}
    rows = []
    for folder, report in sorted(reports.items(), key=lambda item: item[1]["model"]["parameters"]):
        figures = {}
        for m in report["methods"]:
            titles.setdefault(m["method"], m["title"])
            figures[m["method"]] = {key: m["test"].get(key) for key, _ in FIGURES}
        model = report["config"]["model"]
        rows.append({"model": model, "folder": folder, "parameters": report["model"]["parameters"], "test": figures})
    data = next(iter(reports.values()))["data"]["name"] if reports else None
    methods = [{"method": name, "title": title} for name, title in titles.items()]  # a list: JSON keeps its order
    seeds = next(iter(reports.values()))["config"].get("seeds") if reports else None
    return {"data": data, "methods": methods, "models": rows, "seeds": seeds}


def markdown(scale: dict) -> str:
    methods = scale["methods"]
    head = "| model | parameters | " + " | ".join(f"{m['title']}: acc / macro-F1" for m in methods) + " |"
    lines = [
        f"# The power of scale on {scale['data']}: each method against model size",
        "",
        "Every model ran the same comparison (task, budget, seeds, methods); its own report is in its folder"
        + (f" (figures: the mean over seeds {', '.join(map(str, scale['seeds']))})." if scale.get("seeds") else "."),
        "",
        head,
        "|---" * (len(methods) + 2) + "|",
    ]
    for row in scale["models"]:
        cells = []
        for m in methods:
            f = row["test"].get(m["method"])
            cells.append("n/a" if f is None else f"{f['accuracy']:.1%} / {f['macro_f1']:.3f}")
        lines.append(f"| `{row['model']}` | {row['parameters']:,} | " + " | ".join(cells) + " |")
    return "\n".join([*lines, "", f"![scale]({SCALE_PNG})", ""])


def write_scale(scale: dict, out: Path) -> list[Path]:
    from ..plots import plot_against

    write_json_atomic(out / SCALE_JSON, scale)
    write_text_atomic(out / SCALE_MD, markdown(scale))
    sizes = [row["parameters"] for row in scale["models"]]
    panels = [
        (
            title,
            {
                m["title"]: [row["test"].get(m["method"], {}).get(key) for row in scale["models"]]
                for m in scale["methods"]
            },
        )
        for key, title in FIGURES
    ]
    chart = plot_against(
        out / SCALE_PNG, sizes, panels, "model parameters (log scale)", f"The power of scale on {scale['data']}"
    )
    return [out / SCALE_JSON, out / SCALE_MD, chart]
