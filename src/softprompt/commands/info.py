"""`softprompt info PROMPT`: what a prompt folder holds, without loading a model.

Example:

    softprompt info prompt-rotten-tomatoes --json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

NAME = "info"
HELP = "show what a prompt folder holds (method, T, d, size, init, base model and its precision, task)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", help="prompt folder (softprompt, or PEFT prompt tuning or prefix tuning)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def describe(folder: str) -> dict:
    from ..prompts.files import CONFIG_FILE
    from ..prompts.meta import trained_precision
    from ..prompts.methods import load_prompt

    prompt_path = Path(folder)
    prompt = load_prompt(prompt_path)
    config = json.loads((prompt_path / CONFIG_FILE).read_text(encoding="utf-8"))  # load_prompt checked it
    meta = prompt.meta
    return {
        "path": str(prompt_path),
        "method": prompt.METHOD,
        "peft_type": prompt.PEFT_TYPE,
        "num_virtual_tokens": prompt.num_virtual_tokens,
        "dim": prompt.weights.shape[1],  # numbers per virtual token
        "layout": prompt.layout(),
        "parameters": prompt.num_parameters,
        "bytes_on_disk": prompt.file_size(prompt_path),
        "init": meta.init,
        "base_model": meta.base_model,
        "base_fingerprint": meta.base_fingerprint,
        "base_quantization": meta.base_quantization,
        "trained_precision": trained_precision(meta),
        "task": meta.task,
        "template": meta.template,
        "labels": list(meta.verbalizer) if meta.verbalizer else None,
        "format": meta.format,
        "system": meta.system,
        "placement": (meta.placement or "first") if meta.format == "chat" else None,
        "verbalizer": meta.verbalizer,
        "task_type": config.get("task_type"),
        "training": meta.training,
        "softprompt_version": meta.softprompt_version if meta.base_fingerprint else None,
    }


def run(args: argparse.Namespace) -> int:
    info = describe(args.prompt)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    rows = [
        ("prompt", info["path"]),
        ("method", f"{info['method']} ({info['peft_type']})"),
        ("virtual tokens (T)", info["num_virtual_tokens"]),
        ("dimension (d)", info["dim"]),
        ("layout", ", ".join(f"{k} {v}" for k, v in info["layout"].items())),
        ("parameters", f"{info['parameters']:,}"),
        ("size on disk", f"{info['bytes_on_disk']:,} bytes"),
        ("init", info["init"] or "unknown"),
        ("base model", info["base_model"] or "unknown"),
        ("fingerprint", info["base_fingerprint"] or "none (PEFT file: not checked)"),
        ("trained on weights", info["trained_precision"] or "unknown"),
        ("task", info["task"] or "unknown"),
    ]
    if info["template"]:
        rows.append(("template", json.dumps(info["template"])))
    if info["verbalizer"]:
        rows.append(("labels", ", ".join(f"{k} -> {v!r}" for k, v in info["verbalizer"].items())))
    if info["format"] == "chat":
        where = "after the system turn" if info["placement"] == "after_system" else "first"
        rows.append(("chat", f"prompt placed {where}; system message {json.dumps(info['system'])}"))
    for key, value in (info["training"] or {}).items():
        rows.append((f"training.{key}", value))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0
