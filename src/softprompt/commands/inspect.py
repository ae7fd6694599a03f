"""`softprompt inspect PROMPT`: nearest vocabulary tokens, norms, drift and label clustering of a prompt."""

from __future__ import annotations

import argparse
import json
import sys

NAME = "inspect"
HELP = "show what each virtual token of a prompt is close to in the model's vocabulary"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", help="prompt folder (softprompt or PEFT prompt tuning)")
    parser.add_argument(
        "--model", default=None, help="base model (default: the model named in the prompt file, else smollm2-135m)"
    )
    parser.add_argument("--top-k", type=int, default=5, help="nearest tokens shown per virtual token (default: 5)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--plot", metavar="FILE.png", help="also draw a picture (projection, norms, heat map)")
    parser.add_argument(
        "--allow-model-mismatch", action="store_true", help="inspect with a model other than the one it was trained on"
    )


def run(args: argparse.Namespace) -> int:
    from ..inspect_prompt import format_text, inspect_prompt
    from ..models import DEFAULT_MODEL, load_base_model
    from ..prompt import SoftPrompt

    prompt = SoftPrompt.load(args.prompt)
    model = args.model or prompt.meta.base_model or DEFAULT_MODEL
    print(f"loading {model} ...", file=sys.stderr)
    base = load_base_model(model)
    prompt = SoftPrompt.load(args.prompt, base, allow_mismatch=args.allow_model_mismatch)
    inspection = inspect_prompt(prompt, base, top_k=args.top_k)
    if args.plot:
        from ..plots import plot_inspection

        path = plot_inspection(prompt, base, inspection, args.plot)
        print(f"wrote {path}", file=sys.stderr)
    if args.json:
        print(json.dumps(inspection.to_dict(), indent=2))
    else:
        print(format_text(inspection))
    return 0
