"""The comparison report: JSON (every figure), Markdown (the seed's table, measured) and PNG charts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from .. import __version__
from ..balance import DECISION_KEY, decision_text
from ..bootstrap import LEVEL, RESAMPLES, gap_text, paired_label_gap
from ..fileio import write_json_atomic, write_text_atomic
from ..metrics import recall_text
from .config import CompareConfig
from .result import MethodResult
from .task_data import TaskData

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
COST_PNG = "cost.png"
QUALITY_PNG = "quality.png"
LOSS_PNG = "training-loss.png"


def build_report(
    config: CompareConfig, data: TaskData, model: dict, before: dict, results: list[MethodResult], seconds: float
) -> dict:
    return {
        "softprompt_version": __version__,
        "config": {**config.fingerprint(), "methods": list(config.methods), "device": config.device},
        "refused": config.refused,  # method -> why it was not run
        "model": model,
        "data": {
            "name": data.name,
            "description": data.description,
            "train_examples": len(data.train),
            "test_examples": len(data.test),
            "test_split_size": data.test_split_size,
            "max_input_tokens": data.max_input_tokens,
            "template": data.task.template,
            "verbalizer": data.task.verbalizer,
            "test_gold": [e.output for e in data.test],  # what `predictions` are scored against
        },
        "forgetting_before": before,
        "methods": [asdict(r) for r in results],
        "gaps": gaps_to_the_best(data, results),
        "total_seconds": seconds,
    }


def gaps_to_the_best(data: TaskData, results: list[MethodResult]) -> dict:
    """Each method's gap to the most accurate one on the same test examples, with a paired bootstrap interval.

    A one-seed comparison on a few hundred examples has wide error bars; this says how
    wide. Methods scored before predictions were kept (an older saved result) are left out.
    """
    scored = {r.method: (r.test["accuracy"], [r.test["predictions"]]) for r in results if "predictions" in r.test}
    return paired_gaps(scored, [e.output for e in data.test], data.task.labels)


def paired_gaps(scored: dict[str, tuple[float, list[list[str]]]], gold: list[str], labels: Sequence[str]) -> dict:
    """{method: (accuracy, predictions per seed)} -> each method's gap to the most accurate, paired over examples."""
    if len(scored) < 2:
        return {}
    best = max(scored, key=lambda method: scored[method][0])
    return {
        "reference": best,
        "level": LEVEL,
        "resamples": RESAMPLES,
        "methods": {
            method: paired_label_gap(predictions, scored[best][1], gold, labels)
            for method, (_, predictions) in scored.items()
            if method != best
        },
    }


# -- formatting ---------------------------------------------------------------------


def human_bytes(n: float | None) -> str:
    if n is None:
        return "n/a"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


def human_seconds(s: float | None) -> str:
    if s is None:
        return "n/a"
    if s < 60:
        return f"{s:.1f} s"
    return f"{int(s // 60)} min {s % 60:.0f} s"


def _pct(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "n/a"
    return f"{x:+.1%}" if signed else f"{x:.1%}"


def _forgetting_cells(m: dict) -> tuple[str, str]:
    f = m["forgetting"]
    same = " (weights bitwise unchanged)" if f.get("weights_unchanged") else ""
    pb, pa = f.get("perplexity_before"), f.get("perplexity_after")
    ppl = "n/a" if pb is None or pa is None else f"{pb:.2f} → {pa:.2f} ({_pct(f.get('perplexity_change'), True)}){same}"
    if "second_task_accuracy_before" in f:
        second = (
            f"{_pct(f['second_task_accuracy_before'])} → {_pct(f['second_task_accuracy_after'])} "
            f"({100 * f['second_task_accuracy_change']:+.1f} points){same}"
        )
    else:
        second = "not measured"
    return ppl, second


def comparison_table(report: dict) -> str:
    """The seed's "Technical Comparison" rows with this run's measured figures, one column per method."""
    methods = report["methods"]
    model_params = report["model"]["parameters"]
    rows: list[tuple[str, list[str]]] = []

    def row(name: str, cell) -> None:
        rows.append((name, [cell(m) for m in methods]))

    row(
        "Trainable parameters",
        lambda m: f"{m['trainable_parameters']:,} ({m['trainable_parameters'] / model_params:.4%} of the model)",
    )
    row("Storage per task", lambda m: f"{human_bytes(m['storage_bytes'])} ({m['storage']})")
    row(
        "Training wall time",
        lambda m: human_seconds(m["train_seconds"]) + (f" ({m['steps']} steps)" if m["steps"] else ""),
    )
    row("Peak memory growth", lambda m: human_bytes(m["peak_memory_bytes"]))
    row("Training state (params + grads + optimiser)", lambda m: human_bytes(m["training_state_bytes"]))
    row("Test accuracy", lambda m: _pct(m["test"]["accuracy"]))
    row("Test macro-F1", lambda m: f"{m['test']['macro_f1']:.3f}")
    row("Test recall per class", lambda m: recall_text(m["test"]["per_label"]) if m["test"].get("per_label") else "")
    row("Decision rule", _decision)
    row("Settings", lambda m: m["details"].get("settings", ""))
    row("Labelled examples used (human effort)", _effort)
    row("Interpretability", lambda m: m["interpretability"])
    row("Forgetting: perplexity on general English", lambda m: _forgetting_cells(m)[0])
    second = report["config"].get("second_task")
    if second:
        row(f"Forgetting: zero-shot accuracy on {second}", lambda m: _forgetting_cells(m)[1])
    head = "| Feature | " + " | ".join(m["title"] for m in methods) + " |"
    rule = "|---" * (len(methods) + 1) + "|"
    body = ["| " + name + " | " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for name, cells in rows]
    return "\n".join([head, rule, *body])


def _demonstrations(report: dict) -> str:
    asked = report["config"]["few_shot_k"]
    used = next((m["examples_seen"] for m in report["methods"] if m["method"] == "few-shot"), asked)
    return str(asked) if used == asked else f"{used} (of the {asked} asked; no more fit the model's context)"


def _effort(m: dict) -> str:
    if m["method"] == "zero-shot":
        return "0 (an instruction written by hand)"
    if m["method"] == "few-shot":
        return f"{m['examples_seen']} in context (chosen by hand or at random)"
    return f"{m['examples_seen']:,} seen in training"


def findings(report: dict) -> list[str]:
    """The seed's claims, each checked against this run's numbers (sentences built from the figures)."""
    by = {m["method"]: m for m in report["methods"]}
    out = []
    pt, full, lora = by.get("prompt-tuning"), by.get("full-finetune"), by.get("lora")
    if pt and full:
        out.append(
            f"Trainable parameters: prompt tuning trains {pt['trainable_parameters']:,} numbers, "
            f"{full['trainable_parameters'] / pt['trainable_parameters']:,.0f}x fewer than full fine-tuning "
            f"({full['trainable_parameters']:,})."
        )
        out.append(
            f"Storage: one task costs {human_bytes(pt['storage_bytes'])} as a soft prompt against "
            f"{human_bytes(full['storage_bytes'])} as a fine-tuned model "
            f"({full['storage_bytes'] / pt['storage_bytes']:,.0f}x)."
        )
    if pt and lora:
        out.append(
            f"LoRA, the other parameter-efficient method, trains {lora['trainable_parameters']:,} parameters "
            f"and stores {human_bytes(lora['storage_bytes'])} per task."
        )
    for name in ("prefix-tuning", "p-tuning"):
        m = by.get(name)
        if m:
            stored = m["details"].get("stored_parameters", m["trainable_parameters"])
            versus = f" (prompt tuning: {_pct(pt['test']['accuracy'])})" if pt else ""
            out.append(
                f"{m['title']} trains {m['trainable_parameters']:,} numbers and stores {stored:,} "
                f"({human_bytes(m['storage_bytes'])}); test accuracy {_pct(m['test']['accuracy'])}{versus}, "
                f"macro-F1 {m['test']['macro_f1']:.3f}."
            )
    trained = [m for m in report["methods"] if m["steps"]]
    if len(trained) > 1:
        fastest = min(trained, key=lambda m: m["train_seconds"])
        top = max(m["test"]["accuracy"] for m in report["methods"])
        best = [m["title"] for m in report["methods"] if m["test"]["accuracy"] == top]
        out.append(
            f"Compute: with the same {fastest['steps']} steps, the fastest to train was {fastest['title']} "
            f"({human_seconds(fastest['train_seconds'])}); the most accurate on the test subset: "
            f"{'; '.join(best)} ({_pct(top)})."
        )
    for m in report["methods"]:
        f = m["forgetting"]
        if f.get("weights_unchanged") or "perplexity_change" not in f:
            continue
        sentence = (
            f"Forgetting under {m['title']}: perplexity on general English went from "
            f"{f['perplexity_before']:.2f} to {f['perplexity_after']:.2f} ({f['perplexity_change']:+.2%})"
        )
        if "second_task_accuracy_change" in f:
            sentence += f"; {f['second_task']} zero-shot accuracy changed by {100 * f['second_task_accuracy_change']:+.1f} points"
        out.append(sentence + ".")
    frozen = [m["title"] for m in report["methods"] if m["forgetting"].get("weights_unchanged")]
    if frozen:
        out.append(
            f"{'; '.join(frozen)} left the base model's weights bitwise unchanged (hashed before and after): "
            "no forgetting is possible."
        )
    return out


def markdown(report: dict) -> str:
    c, d, model = report["config"], report["data"], report["model"]
    before = report["forgetting_before"]
    lines = [
        f"# Prompt tuning against the alternatives: {c['model']} on {d['name']}",
        "",
        f"Model: `{c['model']}` ({model['parameters']:,} parameters, hidden size {model['hidden_size']}"
        + (f"; frozen weights held in {c['quantize']}" if c.get("quantize") else "")
        + f"). Task: {d['description']}",
        "",
        f"Budget: every trained method takes the same {c['steps']} optimiser steps of {c['batch_size']} examples "
        f"on the same batches (seed {c['seed']}). Test figures are on the first {d['test_examples']} examples of "
        f"the {d['test_split_size']}-example test split; "
        + (f"inputs are cut to {d['max_input_tokens']} tokens. " if d["max_input_tokens"] else "inputs are not cut. ")
        + f"Total run time {human_seconds(report['total_seconds'])} (methods resumed from earlier runs count "
        "their own time only).",
        "",
        "## Technical comparison, measured",
        "",
        comparison_table(report),
        "",
        *[f"Not run: {why}\n" for why in report.get("refused", {}).values()],
        *gaps_section(report),
        "## The seed's claims against this run",
        "",
        *[f"- {s}" for s in findings(report)],
        "",
        *_prompt_neighbours(report),
        "## How each figure was measured",
        "",
        f"- Hard prompts: zero-shot is an instruction ({_quoted(report, 'zero-shot')}) before the template "
        f"`{d['template']!r}`; few-shot adds {_demonstrations(report)} training examples balanced over the labels. "
        "Every method is scored the same way: rank classification over the label words "
        f"({', '.join(repr(v) for v in d['verbalizer'].values())}) at the answer position.",
        f"- Prompt tuning: softprompt's trainer, class-label init, {_prompt_recipe(report)}; each prompt method "
        "trains at its own recipe (the settings `softprompt train --method M` uses; the Settings row) unless a "
        "compare flag set T, the optimiser or the LR for all. Prefix tuning: the same trainer and budget, T keys "
        "and values in every layer "
        "(P-tuning v2; they start as the keys/values the model makes of the class-label prompt). P-tuning: the "
        "prompt trained through P-tuning's MLP encoder, folded into plain vectors on save. Trainable parameters "
        "count what trains (an MLP's too); the stored prompt is the folded one. "
        f"LoRA: PEFT, r={c['lora_r']}, alpha={c['lora_alpha']}, "
        f"PEFT's default target modules, AdamW LR {c['lora_lr']}"
        + (
            f" (the base being {c['quantize']}, QLoRA: fp32 adapters over the frozen quantised layers, with PEFT's "
            "targets, init and adapter files)"
            if c.get("quantize")
            else ""
        )
        + ". Full fine-tuning: every weight, AdamW LR "
        f"{c['full_lr']}. LoRA and full fine-tuning warm up linearly over {int(c['steps'] * c['warmup_fraction'])} "
        "steps, then decay linearly; all clip gradients at 1.0; all train on the label-word cross-entropy.",
        "- Storage: bytes on disk of the files a user keeps per task (tokenizer and shared base model excluded); "
        "hard prompts: the prompt text in UTF-8.",
        "- Peak memory growth: the process's resident memory sampled every 5 ms while the method trained and "
        "was evaluated, minus the level at its start (the base model, and the model copy that LoRA and full "
        "fine-tuning train here, are already resident). Memory freed earlier and kept by the allocator can make "
        "later methods read low; the exact training state (trained parameters, gradients, optimiser state) is "
        "shown beside it.",
        f"- Forgetting: perplexity of the model on the first {c['perplexity_tokens']:,} tokens of general English "
        f"(gensim's Lee corpus), in windows of {c['perplexity_window']} tokens"
        + (
            f"; zero-shot accuracy on the first {c['second_task_size']} test examples of {c['second_task']} "
            f"(inputs cut to {c['second_task_max_tokens']} tokens)"
            if c.get("second_task")
            else ""
        )
        + f". Before: the base model (measured in {human_seconds(before.get('seconds'))}). "
        "Methods that do not change the weights are checked by hashing every weight before and after.",
        "",
        "## Charts",
        "",
        f"![cost]({COST_PNG})",
        "",
        f"![quality]({QUALITY_PNG})",
        "",
    ]
    if any(m["details"].get("losses") for m in report["methods"]):
        lines += [f"![training loss]({LOSS_PNG})", ""]
    return "\n".join(lines)


def gaps_section(report: dict) -> list[str]:
    """How far each method is from the most accurate, with the interval that says how sure that is."""
    gaps = report.get("gaps")
    if not gaps:
        return []
    n = report["data"]["test_examples"]
    titles = {m["method"]: m["title"] for m in report["methods"]}
    return gap_table(
        f"## How sure the differences are ({n} test examples, one seed)",
        f"Each method minus {titles[gaps['reference']]} (the most accurate here) on the same test examples, with "
        f"a {gaps['level']:.0%} interval from a paired bootstrap over those examples ({gaps['resamples']:,} draws). "
        "An interval that holds 0 is a difference these examples cannot tell from none. Each method ran once, so "
        "the spread over seeds is not in the intervals: several `--seed` values measure it (`seeds.md`).",
        gaps,
        titles,
    )


def gap_table(heading: str, text: str, gaps: dict, titles: dict[str, str]) -> list[str]:
    """A heading, a paragraph and each method's gap to the reference as a row of a table."""
    lines = [heading, "", text, ""]
    lines += ["| Method | Accuracy, points | Macro-F1 |", "|---|---|---|"]
    for method, g in gaps["methods"].items():
        lines.append(f"| {titles[method]} | {gap_text(g['accuracy'], points=True)} | {gap_text(g['macro_f1'])} |")
    return [*lines, ""]


def _prompt_neighbours(report: dict) -> list[str]:
    """The trained soft prompt's nearest vocabulary tokens (what `softprompt inspect` shows), as evidence."""
    for m in report["methods"]:
        near = m["details"].get("nearest_tokens") if m["method"] == "prompt-tuning" else None
        if near:
            cells = [", ".join(f"`{t!r}`" for t in tokens).replace("|", "\\|") for tokens in near]
            rows = [f"| {i} | {cell} |" for i, cell in enumerate(cells)]
            return [
                "## What the trained soft prompt is close to",
                "",
                f"Nearest vocabulary tokens (cosine) of each virtual token; {m['interpretability']}. "
                f"`softprompt inspect {m['details'].get('folder', 'PROMPT')}` shows more.",
                "",
                "| virtual token | nearest tokens |",
                "|---|---|",
                *rows,
                "",
            ]
    return []


def _prompt_recipe(report: dict) -> str:
    for m in report["methods"]:
        if m["method"] == "prompt-tuning":
            d = m["details"]
            return f"{d.get('optimizer')} at LR {d.get('lr')} with a {d.get('schedule', 'constant')} schedule"
    return "(not run here)"


def _quoted(report: dict, method: str) -> str:
    for m in report["methods"]:
        if m["method"] == method:
            text = m["details"].get("prompt_text", "")
            return repr(text.split("\n\n")[0]) if text else "n/a"
    return "the default instruction"


# -- charts ---------------------------------------------------------------------


def write_charts(report: dict, out: Path) -> list[Path]:
    from ..plots import plot_bars, plot_lines

    methods = report["methods"]
    names = [m["title"].replace(" (softprompt)", "").replace("Hard prompt, ", "") for m in methods]
    cost = plot_bars(
        out / COST_PNG,
        names,
        [
            ("Trainable parameters (log)", [m["trainable_parameters"] for m in methods], True),
            ("Storage per task, bytes (log)", [m["storage_bytes"] for m in methods], True),
            ("Training wall time, s", [m["train_seconds"] for m in methods], False),
            ("Peak memory growth, MB", [m["peak_memory_bytes"] / 1e6 for m in methods], False),
            ("Training state, MB", [m["training_state_bytes"] / 1e6 for m in methods], False),
        ],
        f"Cost of adapting {report['config']['model']} to {report['data']['name']}",
    )
    before = report["forgetting_before"]
    quality_panels = [
        ("Test accuracy", [m["test"]["accuracy"] for m in methods], False),
        ("Test macro-F1", [m["test"]["macro_f1"] for m in methods], False),
    ]
    if before.get("perplexity"):
        quality_panels.append(
            (
                f"Perplexity on general English: change, % (base {before['perplexity']:.1f}; up = forgetting)",
                [_scaled(m["forgetting"].get("perplexity_change"), 100) for m in methods],
                False,
            )
        )
    if before.get("second_task"):
        second = before["second_task"]
        quality_panels.append(
            (
                f"{second['task']} zero-shot accuracy: change, points (base {second['accuracy']:.1%})",
                [_scaled(m["forgetting"].get("second_task_accuracy_change"), 100) for m in methods],
                False,
            )
        )
    quality = plot_bars(out / QUALITY_PNG, names, quality_panels, "Accuracy on the task, and what the model forgot")
    curves = {n: m["details"].get("losses", []) for n, m in zip(names, methods) if m["details"].get("losses")}
    paths = [cost, quality]
    if curves:
        paths.append(plot_lines(out / LOSS_PNG, curves, "Training loss (label-word cross-entropy)", "step", "loss"))
    return paths


def _scaled(x: float | None, factor: float) -> float | None:
    return None if x is None else x * factor


def write_report(report: dict, out: str | Path) -> list[Path]:
    out = Path(out)
    write_json_atomic(out / REPORT_JSON, report)
    write_text_atomic(out / REPORT_MD, markdown(report))
    return [out / REPORT_JSON, out / REPORT_MD, *write_charts(report, out)]


def _decision(method: dict) -> str:
    """How the method's test answers were decided (balance.py); "" for a kind without labels."""
    if not method["test"].get("per_label"):
        return ""
    return decision_text(method["test"].get(DECISION_KEY)) or "argmax"
