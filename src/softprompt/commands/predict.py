"""`softprompt predict --model M --prompt P [--prompt P2 ...] --input FILE|-`: one JSON line per input.

Example:

    softprompt predict --prompt prompt-rotten-tomatoes --input reviews.txt --output answers.jsonl

Inputs: JSON Lines / CSV / TSV / Parquet files (column --text-column), any
other file or stdin as plain lines (stdin holding JSON objects is read as
JSON Lines). A row of OpenAI `messages` (no --text-column field) is a
conversation: a chat prompt renders it as it was trained (a final assistant
turn is dropped: it is what gets predicted). A row may name its prompt folder in --prompt-column; otherwise
every --prompt answers every input (one line per prompt), or with --ensemble
the prompts vote (or average) into one line. Classification prompts give the
label and each label's probability; generation prompts give the text. A bad
input (or one naming a prompt folder that does not load) gets an "error" line,
the others are still answered, and the exit code is 1. A --prompt folder that
does not load or fit the model stops the command before the model loads (exit 2).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from dataclasses import dataclass

from .generate import add_generation_arguments, add_model_arguments, generation_config, load_predictor

NAME = "predict"
HELP = "classify or generate for every input in a file (or stdin) with soft prompts"
CHUNK = 256  # inputs per Predictor call, so progress can be shown


@dataclass(frozen=True)
class Input:
    text: object  # normally str; anything else becomes a per-input error
    prompt: str | None  # from --prompt-column, else None
    where: str


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, prompt_required=False)
    parser.add_argument("--input", required=True, metavar="FILE", help="input file, or - for stdin")
    parser.add_argument("--output", default="-", metavar="FILE", help="output JSON Lines file (default: stdout)")
    parser.add_argument("--text-column", default="text", help="input text column/field (default: text)")
    parser.add_argument("--prompt-column", default="prompt", help="optional column naming each row's prompt folder")
    parser.add_argument("--ensemble", choices=("vote", "mean"), help="combine all --prompt into one answer")
    add_generation_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ..errors import EXIT_OK, EXIT_SOME_FAILED, SoftPromptError
    from ..fileio import atomic_path, check_output_path
    from ..prompts.methods import load_prompt

    if args.output != "-":
        check_output_path(args.output, flag="--output", folder=False)
    inputs = read_inputs(args.input, args.text_column, args.prompt_column)
    if not args.prompt and not any(i.prompt for i in inputs):
        raise SoftPromptError("give at least one --prompt (or a prompt column in the input)")
    config = generation_config(args)
    predictor = load_predictor(args)
    failed: dict[str, str] = {}  # a prompt folder named by some rows that does not load fails those rows only
    for name in {i.prompt for i in inputs if i.prompt} - set(args.prompt):
        try:
            predictor.add_prompt(name, load_prompt(name), allow_mismatch=args.allow_model_mismatch)
        except SoftPromptError as e:
            failed[name] = str(e)
    if args.output == "-":
        failures = _answer(predictor, failed, inputs, args, config, sys.stdout)
    else:
        with atomic_path(args.output) as tmp, open(tmp, "w", encoding="utf-8") as sink:
            failures = _answer(predictor, failed, inputs, args, config, sink)
    print(f"softprompt predict: {len(inputs)} inputs, {failures} failed", file=sys.stderr)
    return EXIT_SOME_FAILED if failures else EXIT_OK


def _answer(predictor, failed, inputs, args, config, sink) -> int:
    """Write one JSON line per (input, prompt) or per input (--ensemble); return the number of error lines."""
    from ..infer import InputError

    start, failures = time.perf_counter(), 0
    for first in range(0, len(inputs), CHUNK):
        chunk = inputs[first : first + CHUNK]
        if args.ensemble:
            texts = [i.text for i in chunk]
            lines = [
                (n, tuple(args.prompt), r) for n, r in enumerate(predictor.ensemble(args.prompt, texts, args.ensemble))
            ]
        else:
            pairs = [
                (n, name) for n, item in enumerate(chunk) for name in ([item.prompt] if item.prompt else args.prompt)
            ]
            results: dict[int, object] = {
                k: InputError(failed[name]) for k, (_, name) in enumerate(pairs) if name in failed
            }
            # Prompts with labels answer with one of them; the others generate text.
            live = [k for k, (_, name) in enumerate(pairs) if name not in failed]
            labelled = [k for k in live if predictor.classifies(pairs[k][1])]
            free = [k for k in live if not predictor.classifies(pairs[k][1])]
            requests = {k: (pairs[k][1], chunk[pairs[k][0]].text) for k in live}
            results.update(zip(labelled, predictor.classify([requests[k] for k in labelled])))
            results.update(zip(free, predictor.generate([requests[k] for k in free], config)))
            lines = [(n, name, results[k]) for k, (n, name) in enumerate(pairs)]
        for n, name, result in lines:
            failures += isinstance(result, InputError)
            sink.write(json.dumps(_line(first + n + 1, chunk[n], name, result), ensure_ascii=False) + "\n")
        sink.flush()
        _progress(first + len(chunk), len(inputs), time.perf_counter() - start)
    return failures


def _line(number: int, item: Input, prompt, result) -> dict:
    from ..infer import ClassifyResult, InputError

    line = {"input": number, "where": item.where, "prompt": list(prompt) if isinstance(prompt, tuple) else prompt}
    line["text"] = item.text
    if isinstance(result, InputError):
        line["error"] = f"{item.where}: {result.message}"
    elif isinstance(result, ClassifyResult):
        line["label"], line["probs"] = result.label, {k: round(v, 6) for k, v in result.probs.items()}
    else:
        line["generated"] = result
    return line


def _progress(done: int, total: int, elapsed: float) -> None:
    rate = done / elapsed if elapsed > 0 else 0.0
    left = (total - done) / rate if rate else 0.0
    print(f"predict: {done}/{total} inputs, {rate:.1f} inputs/s, {left:.0f}s left", file=sys.stderr)


# -- reading inputs -------------------------------------------------------------------


def read_inputs(spec: str, text_column: str, prompt_column: str) -> list[Input]:
    """Every input row; a data file by its suffix, else plain lines (JSON Lines if they are JSON objects)."""
    from pathlib import Path

    from ..data import COMPRESSIONS, FORMATS, read_rows
    from ..errors import DataError

    if spec == "-":
        # The test suite swaps in a text stream without a binary buffer.
        stdin = getattr(sys.stdin, "buffer", None) or io.BytesIO(sys.stdin.read().encode("utf-8"))
        lines, name = _plain_lines(stdin, "<stdin>"), "<stdin>"
    else:
        path = Path(spec)
        suffixes = [s.lower() for s in path.suffixes if s.lower() not in COMPRESSIONS]
        if suffixes and suffixes[-1] in FORMATS:
            rows = [(f"{spec}:{n}", row) for n, row in read_rows(path)]
            return _from_rows(rows, text_column, prompt_column, spec)
        if not path.is_file():
            raise DataError(f"{spec}: no such file" if not path.exists() else f"{spec}: a folder, not an input file")
        with open(path, "rb") as f:
            lines, name = _plain_lines(f, spec), spec
    numbered = [(f"{name}:{n}", line) for n, line in enumerate(lines, start=1) if line.strip()]
    if numbered and numbered[0][1].lstrip().startswith("{"):
        rows = []
        for where, line in numbered:
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: not valid JSON ({e.msg}); give one JSON object per line") from None
            rows.append((where, row if isinstance(row, dict) else {}))
        return _from_rows(rows, text_column, prompt_column, name)
    return [Input(line, None, where) for where, line in numbered]


def _plain_lines(f, name: str) -> list[str]:
    """Every line of a binary stream as text, each line bounded in length while it is read."""
    from ..data import bounded_lines

    return [raw.decode("utf-8", errors="replace").rstrip("\r\n") for raw in bounded_lines(f, name)]


def _from_rows(rows, text_column: str, prompt_column: str, name: str) -> list[Input]:
    from ..errors import DataError

    if not rows:
        raise DataError(f"{name}: no inputs")
    if all(text_column not in row and MESSAGES_COLUMN not in row for _, row in rows):
        raise DataError(f"{name}: no row has the column '{text_column}'; choose another with --text-column")
    return [
        Input(_text(row, text_column), str(row[prompt_column]) if row.get(prompt_column) else None, where)
        for where, row in rows
    ]


MESSAGES_COLUMN = "messages"


def _text(row: dict, text_column: str) -> object:
    """The row's text; a conversation (OpenAI `messages`, when the row has no text column) as its JSON."""
    if text_column not in row and isinstance(row.get(MESSAGES_COLUMN), list):
        return json.dumps(row[MESSAGES_COLUMN], ensure_ascii=False)
    return row.get(text_column, "")
