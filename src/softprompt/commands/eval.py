"""`softprompt eval`: score a prompt on labelled data.

    softprompt eval --model smollm2-135m --prompt prompt-rotten-tomatoes --data rotten-tomatoes

The task (template, labels) comes from the prompt file; flags override it.
Without --prompt the bare model is scored with the same task (a zero-shot baseline).
"""

from __future__ import annotations

import argparse
import json
import time

from ..errors import worded
from .options import add_model_options, device, quantize
from .train import add_data_arguments, flag, spec_from_args

NAME = "eval"
HELP = "evaluate a prompt on labelled data (accuracy/macro-F1 or exact match/token F1)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    parser.add_argument("--prompt", default=None, help="prompt folder (omit to score the bare model)")
    parser.add_argument("--split", choices=("train", "dev", "test"), default="test", help="split of a built-in dataset, a saved DatasetDict or an hf: data set (default: test); a data file is scored whole")  # fmt: skip
    parser.add_argument("--limit", type=int, default=None, help="score only the first N examples")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--allow-model-mismatch", action="store_true", help="use a prompt trained on another model")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_model_options(parser)


def run(args: argparse.Namespace) -> int:
    with worded(flag):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from ..balance import DECISION_KEY, decision_text
    from ..data import BuiltinDataset, SplitDataset, resolve_data
    from ..errors import SoftPromptError
    from ..evaluate import encode_eval_set, evaluate
    from ..metrics import recall_text
    from ..models import DEFAULT_MODEL, load_base_model
    from ..prompts.methods import load_prompt
    from ..recipe import prepare

    spec = spec_from_args(args, with_settings=False)  # flag problems show up before the model loads
    args.model = args.model or (None if args.prompt is None else _prompt_model(args.prompt)) or DEFAULT_MODEL
    base = load_base_model(args.model, device=device(args), quantize=quantize(args))
    prompt = None if args.prompt is None else load_prompt(args.prompt, base, allow_mismatch=args.allow_model_mismatch)
    data = prepare(spec, need_train=False, meta=None if prompt is None else prompt.meta, name=flag)
    has_splits = isinstance(resolve_data(args.data), BuiltinDataset | SplitDataset)
    examples = getattr(data, args.split) if has_splits else data.test
    if not examples:
        raise SoftPromptError(f"{args.data}: no {args.split} examples to score; choose another --split")
    examples = examples[: args.limit] if args.limit else examples
    truncate = args.truncate or "left"
    max_tokens = args.max_input_tokens or data.max_input_tokens
    rows = encode_eval_set(base, data.task, examples, max_tokens=max_tokens, truncate=truncate)
    start = time.perf_counter()
    report = evaluate(base, data.task, prompt, rows.rows, batch_size=args.batch_size)
    seconds = time.perf_counter() - start
    report = {
        **report,
        "truncated": rows.truncated,
        "seconds": round(seconds, 2),
        "prompt": args.prompt,
        "data": args.data,
    }
    if args.json:
        print(json.dumps(report, sort_keys=True))
        return 0
    for key in ("accuracy", "macro_f1", "exact_match", "token_f1"):
        if key in report:
            print(f"{key:<12} {report[key]:.4f}")
    if "loss" in report:
        what = "over the labels, on the gold label" if data.task.format != "chat" else "of the gold reply's tokens"
        print(f"{'loss':<12} {report['loss']:.4f}  (mean cross-entropy {what})")
    if report.get("per_label"):  # a class the prompt starves shows as recall 0.00
        print(f"{'recall':<12} {recall_text(report['per_label'])}")
        print(f"{'decision':<12} {decision_text(report.get(DECISION_KEY)) or 'argmax (no label bias)'}")
    print(f"{'n':<12} {report['n']}  ({rows.truncated} truncated, {seconds:.1f}s, {report['n'] / seconds:.1f} ex/s)")
    return 0


def _prompt_model(folder: str) -> str | None:
    from ..prompts.methods import load_prompt

    return load_prompt(folder).meta.base_model
