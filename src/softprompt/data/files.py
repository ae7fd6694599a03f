"""Reading rows from data files: JSON Lines, CSV, TSV (optionally gzip/bzip2), Parquet and data set folders.

Every problem raises `DataError` naming the file and line, and no line is held whole
beyond MAX_LINE_BYTES, so a hostile file cannot take the memory it would to parse.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from softprompt.data.arrow import SAVED_STATE, arrow_batches, is_saved_dataset, load_pyarrow, parquet_batches
from softprompt.errors import DataError

FORMATS = (".jsonl", ".json", ".csv", ".tsv", ".parquet")
COMPRESSIONS = (".gz", ".bz2")
# A line (one row of JSON Lines or CSV, one input of predict) longer than this is refused while it is read,
# so a file without line breaks cannot take the memory it would to hold and parse it (a 1 GiB line: 2.4 GB).
MAX_LINE_BYTES = 16 * 2**20


def read_rows(path: str | Path, *, name: str | None = None) -> Iterator[tuple[int, dict[str, object]]]:
    """Yield (line number, row) from a data file; the number is 1-based.

    For CSV/TSV it is the physical line where the row starts (the header is line 1); for
    JSON Lines the line of the object; for Parquet and data set folders (saved with
    `datasets`' save_to_disk, or of Parquet files) the row's position (first row = 1).
    Messages name the file `name` (e.g. the name a user uploaded it under), else its path.
    """
    path = Path(path)
    name = name or str(path)
    if not path.exists():
        raise DataError(f"{name}: no such file")
    if path.is_dir():
        yield from _folder_rows(path, name)
        return
    if not path.is_file():
        raise DataError(f"{name}: not a file")
    kind, compression = _file_kind(path)
    if kind == ".parquet":
        yield from _parquet_rows(path, name)
        return
    lines = _decoded_lines(_binary_lines(path, name, compression), name)
    if kind in (".jsonl", ".json"):
        yield from _json_rows(lines, name)
    else:
        yield from _csv_rows(lines, name, delimiter="\t" if kind == ".tsv" else ",")


def _file_kind(path: Path) -> tuple[str, str | None]:
    """(format suffix, compression suffix or None), e.g. ('.csv', '.gz') for x.csv.gz."""
    suffixes = [s.lower() for s in path.suffixes]
    compression = suffixes.pop() if suffixes and suffixes[-1] in COMPRESSIONS else None
    kind = suffixes[-1] if suffixes else ""
    if kind not in FORMATS or (compression and kind == ".parquet"):
        supported = ", ".join(FORMATS)
        raise DataError(
            f"{path}: unsupported file type '{''.join(path.suffixes) or '(none)'}' "
            f"(supported: {supported}; .json must hold JSON Lines; "
            f"text formats may end in {' or '.join(COMPRESSIONS)})"
        )
    return kind, compression


def _binary_lines(path: Path, name: str, compression: str | None) -> Iterator[bytes]:
    # Lines are split on bytes and decoded one by one, so a bad byte is reported with its
    # line number; a UTF-8 multi-byte sequence never contains b"\n", so splitting is safe.
    opener = {".gz": gzip.open, ".bz2": bz2.open}.get(compression or "", open)
    try:
        with opener(path, "rb") as f:
            yield from bounded_lines(f, name)
    except (OSError, EOFError) as e:  # permissions, truncated or not-really-gzip files
        raise DataError(f"{name}: cannot read the file ({e})") from None


def bounded_lines(f: BinaryIO, name: str, limit: int = MAX_LINE_BYTES) -> Iterator[bytes]:
    """The lines of a binary file, each read with at most `limit` bytes in memory; a longer one is refused."""
    number = 0
    while line := f.readline(limit + 1):
        number += 1
        if len(line) > limit:
            raise DataError(
                f"{name}:{number}: the line is longer than {limit / 2**20:.0f} MiB; give one example per line "
                "(is this a data file?)"
            )
        yield line


def _decoded_lines(raw_lines: Iterable[bytes], name: str) -> Iterator[str]:
    for number, raw in enumerate(raw_lines, start=1):
        if number == 1:
            raw = raw.removeprefix(codecs.BOM_UTF8)  # Excel writes one
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(
                f"{name}:{number}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at byte "
                f"{e.start + 1} of the line); save the file as UTF-8"
            ) from None


def _json_rows(lines: Iterable[str], name: str) -> Iterator[tuple[int, dict[str, object]]]:
    hint = "softprompt reads JSON Lines: one JSON object per line"
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except RecursionError:  # nesting deeper than Python's parser goes: not a data row
            raise DataError(f"{name}:{number}: JSON nested too deeply to read; {hint}") from None
        except json.JSONDecodeError as e:
            # A .json file holding one array or one pretty-printed object fails on line 1.
            looks_like_json = line.lstrip().startswith("[") or line.strip() == "{"
            extra = f"; {hint}" if looks_like_json else ""
            raise DataError(f"{name}:{number}: not valid JSON ({e.msg} at column {e.colno}){extra}") from None
        if not isinstance(row, dict):
            raise DataError(f"{name}:{number}: expected a JSON object, got {type(row).__name__}; {hint}")
        yield number, row


def _csv_rows(lines: Iterable[str], name: str, delimiter: str) -> Iterator[tuple[int, dict[str, object]]]:
    reader = csv.reader(lines, delimiter=delimiter)
    header: list[str] | None = None
    while True:
        start = reader.line_num + 1  # a quoted field may span lines: report the first
        try:
            fields = next(reader, None)
        except csv.Error as e:
            raise DataError(f"{name}:{start}: cannot parse the row ({e})") from None
        if fields is None:
            return
        if not fields:  # blank line
            continue
        if header is None:
            header = fields
            duplicates = sorted({c for c in header if header.count(c) > 1})
            if duplicates:
                raise DataError(f"{name}:{start}: duplicate column names {duplicates}")
            continue
        if len(fields) != len(header):
            separator = "tab" if delimiter == "\t" else "comma"
            raise DataError(
                f"{name}:{start}: {len(fields)} fields but the header has {len(header)} "
                f"(an unclosed quote, or a file that is not {separator}-separated?)"
            )
        yield start, dict(zip(header, fields, strict=True))


def _parquet_rows(path: Path, name: str) -> Iterator[tuple[int, dict[str, object]]]:
    pyarrow = load_pyarrow(name, "Parquet")
    number = 0
    for batch in parquet_batches(pyarrow, path, name):  # bounded memory on big files
        for row in batch.to_pylist():
            number += 1
            yield number, row


def _folder_rows(path: Path, name: str) -> Iterator[tuple[int, dict[str, object]]]:
    """Rows of a saved Dataset (its Arrow files in state.json's order) or of a folder of Parquet files."""
    pyarrow = load_pyarrow(name, "a data set folder")
    if is_saved_dataset(path):
        try:
            state = json.loads((path / SAVED_STATE).read_text(encoding="utf-8"))
            files = [path / entry["filename"] for entry in state["_data_files"]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DataError(f"{name}: {SAVED_STATE} is not the one datasets' save_to_disk writes ({e})") from None
        batches = (batch for file in files for batch in arrow_batches(pyarrow, file, f"{name}/{file.name}"))
    else:
        files = sorted(path.glob("*.parquet"))
        if not files:
            raise DataError(
                f"{name}: a folder, but neither a data set saved with datasets' save_to_disk nor Parquet files; "
                f"pass a data file ({', '.join(FORMATS)}) or such a folder"
            )
        batches = (batch for file in files for batch in parquet_batches(pyarrow, file, f"{name}/{file.name}"))
    number = 0
    for batch in batches:
        for row in batch.to_pylist():
            number += 1
            yield number, row
