"""`softprompt generate --model M [--prompt P ...] "text" ...`: generate text, optionally streamed.

Example:

    softprompt generate --prompt prompt-word-analogies "Athens is to Greece as Paris is to" --max-new-tokens 4

Every (prompt, text) pair is one row of one mixed batch stream. Without
--prompt the base model answers the raw text. A text that cannot be answered
(empty, too long) is reported and the exit code is 1; the others are printed.
"""

from __future__ import annotations

import argparse
import json
import sys

from .options import add_model_options, device, quantize

NAME = "generate"
HELP = "generate text with a soft prompt (greedy or sampled, batched, --stream)"


def add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    """The decoding flags, shared with `predict`."""
    group = parser.add_argument_group("decoding")
    group.add_argument("--max-new-tokens", type=int, default=32, help="at most this many new tokens (default 32)")
    group.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default); > 0 samples")
    group.add_argument("--top-k", type=int, default=0, help="sample among the k most likely tokens (0 = all)")
    group.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling threshold (1 = off)")
    group.add_argument("--seed", type=int, default=None, help="seed for sampling (same seed, same text)")
    group.add_argument("--stop", action="append", default=[], metavar="S", help="stop before this string (repeatable)")


def generation_config(args: argparse.Namespace):
    from ..decode import GenerationConfig

    return GenerationConfig.from_options(args)


def add_model_arguments(parser: argparse.ArgumentParser, *, prompt_required: bool) -> None:
    """--model, --prompt, batching and cache flags, shared with `predict`."""
    from ..model_names import DEFAULT_MODEL

    parser.add_argument("--model", default=DEFAULT_MODEL, help="base model: alias, .gguf, folder or hub id")
    parser.add_argument(
        "--prompt",
        action="append",
        default=[],
        required=prompt_required,
        metavar="FOLDER",
        help="prompt folder, plain or deep (repeatable: rows with different prompts share one batch)",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="rows per forward pass (default 32)")
    parser.add_argument("--cache-mb", type=int, default=256, help="prompt key/value cache budget in MiB")
    add_model_options(parser)
    parser.add_argument(
        "--allow-model-mismatch", action="store_true", help="use a prompt even if it was trained on another model"
    )


def load_predictor(args: argparse.Namespace):
    """The base model and a Predictor holding every --prompt.

    A --prompt folder is named by the user, so one that cannot be read or does
    not fit the model stops the command (exit 2); the folders are read before
    the model loads, so a typo costs no model load.
    """
    from ..infer import Predictor
    from ..models import load_base_model
    from ..prompts.methods import load_prompt

    prompts = {folder: load_prompt(folder) for folder in args.prompt}
    base = load_base_model(args.model, device=device(args), quantize=quantize(args))
    predictor = Predictor(base, cache_bytes=args.cache_mb * 2**20, max_batch_size=args.batch_size)
    for folder, prompt in prompts.items():
        predictor.add_prompt(folder, prompt, allow_mismatch=args.allow_model_mismatch)
    return predictor


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "texts",
        nargs="+",
        metavar="TEXT",
        help="input text(s); the prompt's template is applied. A chat prompt takes a conversation as OpenAI "
        'messages JSON (\'[{"role": "user", "content": "hi"}]\'), or a text as the user\'s turn',
    )
    add_model_arguments(parser, prompt_required=False)
    add_generation_arguments(parser)
    parser.add_argument("--stream", action="store_true", help="print tokens as they come")
    parser.add_argument("--json", action="store_true", help="one JSON line per (prompt, text)")


def run(args: argparse.Namespace) -> int:
    from ..errors import EXIT_OK, EXIT_SOME_FAILED
    from ..infer import InputError

    config = generation_config(args)
    predictor = load_predictor(args)
    requests = [(name, text) for name in args.prompt or [None] for text in args.texts]
    results: list = [""] * len(requests)
    show = _Printer(requests, as_json=args.json, stream=args.stream)
    for pieces in predictor.stream(requests, config):
        for i, piece in enumerate(pieces):
            if isinstance(results[i], InputError):
                continue
            results[i] = piece if isinstance(piece, InputError) else results[i] + piece
            show.piece(i, piece)
    show.finish(results)
    return EXIT_SOME_FAILED if any(isinstance(r, InputError) for r in results) else EXIT_OK


class _Printer:
    """Plain text (one row: as is; several: numbered) or JSON lines; streamed rows print as they come."""

    def __init__(self, requests, *, as_json: bool, stream: bool):
        self.requests, self.as_json, self.stream = requests, as_json, stream
        self.live = stream and not as_json and len(requests) == 1

    def piece(self, i: int, piece) -> None:
        if self.live and isinstance(piece, str):
            sys.stdout.write(piece)
            sys.stdout.flush()

    def finish(self, results) -> None:
        from ..infer import InputError

        if self.live and isinstance(results[0], str):
            sys.stdout.write("\n")
        for i, ((name, text), result) in enumerate(zip(self.requests, results)):
            if isinstance(result, InputError):
                print(f"softprompt generate: input {i + 1} ({text[:40]!r}): {result.message}", file=sys.stderr)
            if self.as_json:
                key, value = ("error", result.message) if isinstance(result, InputError) else ("generated", result)
                print(json.dumps({"input": i + 1, "prompt": name, "text": text, key: value}, ensure_ascii=False))
            elif not self.live and isinstance(result, str):
                print(result if len(self.requests) == 1 else f"[{i + 1}] {result}")
