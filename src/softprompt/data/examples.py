"""Labelled examples: rows validated into `Example`s that remember where they came from."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from softprompt.data.example import Example
from softprompt.data.files import read_rows
from softprompt.data.messages import MESSAGES_COLUMN, chat_example
from softprompt.errors import DataError

# Which CLI flag picks each column, for the hint in "missing column" messages.
DEFAULT_COLUMN_FLAGS: Mapping[str, str] = MappingProxyType({"input": "--text-column", "output": "--label-column"})


@dataclass(frozen=True)
class LoadedData:
    examples: tuple[Example, ...]
    skipped: tuple[str, ...]  # one error message per skipped row


class _MissingColumnError(DataError):
    """A row lacks a column; on the first row this is a wrong flag, not a bad row."""


def load_examples(
    path: str | Path,
    *,
    input_column: str = "text",
    output_column: str = "label",
    label_set: Collection[str] | None = None,
    skip_invalid: bool = False,
    require_output: bool = True,
    column_flags: Mapping[str, str] = DEFAULT_COLUMN_FLAGS,
    name: str | None = None,
    messages: bool = False,
) -> LoadedData:
    """Read and validate a data file.

    A bad row raises `DataError`, or with `skip_invalid` is skipped and its message kept in
    `LoadedData.skipped`. A column missing from the first row always raises: that is a wrong
    column name, not a bad row. With `require_output=False` (unlabelled inputs to predict) a
    missing or empty output becomes "". `column_flags` maps "input"/"output" to the CLI flag
    that chooses that column, named in the hint of missing-column messages. Messages name the
    file `name`, else its path. With `messages` the rows are conversations (`data.messages`: the
    input is the conversation, the output its final assistant turn) and the column names are unused.
    """
    path = Path(path)
    name = name or str(path)
    labels = None if label_set is None else frozenset(label_set)
    examples: list[Example] = []
    skipped: list[str] = []
    for number, row in read_rows(path, name=name):
        try:
            if messages:
                example = _chat_example(row, f"{name}:{number}", labels, require_output)
            else:
                example = _example(
                    row, f"{name}:{number}", input_column, output_column, labels, require_output, column_flags
                )
        except DataError as e:
            is_first_row = not examples and not skipped
            if not skip_invalid or (is_first_row and isinstance(e, _MissingColumnError)):
                raise
            skipped.append(str(e))
            continue
        examples.append(example)
    if not examples:
        if skipped:
            raise DataError(f"{name}: no valid examples; all {len(skipped)} rows are invalid, the first: {skipped[0]}")
        raise DataError(f"{name}: no examples (the file has no data rows)")
    return LoadedData(tuple(examples), tuple(skipped))


def _example(
    row: Mapping[str, object],
    where: str,
    input_column: str,
    output_column: str,
    labels: frozenset[str] | None,
    require_output: bool,
    column_flags: Mapping[str, str],
) -> Example:
    if input_column not in row:
        raise _MissingColumnError(_missing_column(where, input_column, row, column_flags.get("input")))
    if output_column not in row and require_output:
        raise _MissingColumnError(_missing_column(where, output_column, row, column_flags.get("output")))
    text = _as_text(row[input_column], where, input_column)
    output = _as_text(row.get(output_column), where, output_column)
    if not text.strip():
        raise DataError(f"{where}: empty '{input_column}'")
    if not output.strip():
        if require_output:
            raise DataError(f"{where}: empty '{output_column}'")
    elif labels is not None and output not in labels:
        allowed = ", ".join(repr(label) for label in sorted(labels))
        raise DataError(f"{where}: '{output_column}' is {output!r}, not one of the labels: {allowed}")
    return Example(input=text, output=output, where=where)


def _chat_example(row: Mapping[str, object], where: str, labels: frozenset[str] | None, require: bool) -> Example:
    if MESSAGES_COLUMN not in row:
        raise _MissingColumnError(_missing_column(where, MESSAGES_COLUMN, row, None))
    example = chat_example(row, where, require_answer=require)
    if labels is not None and example.output and example.output not in labels:
        allowed = ", ".join(repr(label) for label in sorted(labels))
        raise DataError(f"{where}: the final assistant turn is {example.output!r}, not one of the labels: {allowed}")
    return example


def _missing_column(where: str, column: str, row: Mapping[str, object], flag: str | None) -> str:
    shown = ", ".join(repr(c) for c in list(row)[:12]) + (", ..." if len(row) > 12 else "")
    hint = f"; choose another with {flag}" if flag else ""
    return f"{where}: missing column '{column}' (columns here: {shown or 'none'}{hint})"


def _as_text(value: object, where: str, column: str) -> str:
    """Cell value as text: JSON and Parquet cells may be numbers, booleans or null."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"  # JSON's spelling, not Python's
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:  # NaN: how pandas writes a missing cell
            return ""
        # pandas stores an int column with gaps as floats; label 1 must stay "1", not "1.0"
        return str(int(value)) if value.is_integer() else str(value)
    raise DataError(f"{where}: '{column}' holds a {type(value).__name__}, expected text")
