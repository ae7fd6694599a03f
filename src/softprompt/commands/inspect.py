"""`softprompt inspect PROMPT`: nearest vocabulary tokens, norms, drift and label clustering of a prompt.

Example:

    softprompt inspect prompt-rotten-tomatoes --plot prompt.png

With `--data`, also how the prompt's nearest-token projection scores as a hard prompt (projection.py).
"""

from __future__ import annotations

import argparse
import json
import sys

from .options import add_model_options, device, quantize

NAME = "inspect"
HELP = "show what each virtual token of a prompt is close to in the model's vocabulary (a deep prompt: its layers)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", help="prompt folder (softprompt or PEFT prompt tuning or prefix tuning)")
    parser.add_argument(
        "--model", default=None, help="base model (default: the model named in the prompt file, else smollm2-135m)"
    )
    parser.add_argument("--top-k", type=int, default=5, help="nearest tokens shown per virtual token (default: 5)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--plot", metavar="FILE.png", help="also draw a picture (projection, norms, heat map)")
    parser.add_argument(
        "--allow-model-mismatch", action="store_true", help="inspect with a model other than the one it was trained on"
    )
    parser.add_argument(
        "--data",
        default=None,
        help="also score the prompt's nearest-token projection as a hard prompt beside the soft prompt on this "
        "data (built-in dataset name: its --split; data file: all of it; the task comes from the prompt file)",
    )
    parser.add_argument(
        "--split", choices=("train", "dev", "test"), default="dev", help="built-in split (default: dev)"
    )
    parser.add_argument("--limit", type=int, default=None, help="score only the first N examples")
    parser.add_argument("--batch-size", type=int, default=32, help="examples per scoring batch (default: 32)")
    add_model_options(parser)


def run(args: argparse.Namespace) -> int:
    from ..errors import SoftPromptError
    from ..extras import require
    from ..fileio import check_output_path
    from ..models import DEFAULT_MODEL, load_base_model
    from ..prompts.meta import precision_text, trained_precision
    from ..prompts.methods import load_prompt

    if args.plot:
        require("plots", "inspect --plot")
        check_output_path(args.plot, flag="--plot", folder=False)
    prompt = load_prompt(args.prompt)
    model = args.model or prompt.meta.base_model or DEFAULT_MODEL
    print(f"loading {model} ...", file=sys.stderr)
    base = load_base_model(model, device=device(args), quantize=quantize(args))
    prompt = load_prompt(args.prompt, base, allow_mismatch=args.allow_model_mismatch)
    inspection = prompt.inspect(base, top_k=args.top_k)
    if args.data and prompt.input_embeddings() is None:
        raise SoftPromptError(
            f"{args.prompt} is a {prompt.METHOD} prompt: it has no input vectors to project onto the vocabulary, "
            "so --data has nothing to score; it applies to plain prompts"
        )
    if args.data:
        inspection.projection = _score_projection(args, base, prompt, inspection.nearest_token_ids())
    if args.plot:
        path = inspection.plot(prompt, base, args.plot)
        print(f"wrote {path}", file=sys.stderr)
    precision = {
        "trained_on": trained_precision(prompt.meta),
        "inspected_on": precision_text(base.quantization.to_dict()),
    }
    if args.json:
        print(json.dumps({**inspection.to_dict(), "precision": precision}, indent=2))
    else:
        print(f"weights: trained on {precision['trained_on'] or 'unknown'}, inspected on {precision['inspected_on']}")
        print(inspection.text())
    return 0


def _score_projection(args: argparse.Namespace, base, prompt, token_ids: list[int]) -> dict:
    from ..data import BuiltinDataset, resolve_data
    from ..evaluate import encode_eval_set
    from ..projection import score_projection
    from ..recipe import RunSpec, prepare

    data = prepare(RunSpec(data=args.data), need_train=False, meta=prompt.meta)
    builtin = isinstance(resolve_data(args.data), BuiltinDataset)
    examples = getattr(data, args.split) if builtin else data.test
    examples = examples[: args.limit] if args.limit else examples
    rows = encode_eval_set(base, data.task, examples, max_tokens=data.max_input_tokens)
    print(f"scoring the soft prompt and its projection on {len(rows)} examples ...", file=sys.stderr)
    split = args.split if builtin else None
    score = score_projection(
        base,
        data.task,
        prompt.input_embeddings(),
        rows.rows,
        token_ids=token_ids,
        batch_size=args.batch_size,
        split=split,
        head=prompt.head_ids(base),
    )
    return score.to_dict()
