"""Uploaded data files: size-limited, validated, and kept inside the studio's uploads folder.

An upload arrives as the raw request body (no multipart parser needed) with
the user's file name. The name is only ever used for its extension and, after
sanitising, as a readable tail of the stored name `<random id>-<safe name>`;
the server never joins a user-supplied string to a path without checking that
the resolved path is a direct child of the uploads folder. The body is
counted while it is written to a temporary file, and refused as soon as it
exceeds the limit.

A stored file must parse with `data.read_rows` from first to last row (same
reader as training), so a bad byte or an unclosed quote is reported at upload
time, with the user's file name and line. Compressed files are refused: a
small archive can expand without bound.

`describe` gives the page what it needs to choose settings: the columns, a
preview, and guesses for the text and label columns. It reads the whole file,
so it runs on a worker thread (at most PARSE_SLOTS at a time), never on the
event loop: other requests are answered while a big upload is checked.

Besides the per-file limit the folder has a quota (`max_total_bytes`); files
are removed with `delete`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import stat
import unicodedata
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..data import load_examples, read_rows
from ..data.messages import MESSAGES_COLUMN
from ..errors import DataError, SoftPromptError

ALLOWED_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
DEFAULT_MAX_BYTES = 20 * 2**20
PREVIEW_ROWS = 5
DEFAULT_MAX_TOTAL_BYTES = 1 << 30  # all uploads together
MAX_LABELS = 50  # a column with more distinct values is not a label column
PARSE_SLOTS = 1  # uploads checked at once; more wait (each may read up to max_bytes)
# A stored file is "<random hex>-<safe name>": the id the page holds and, after the dash, the name it shows.
ID_RE = re.compile(r"(?P<token>[0-9a-f]{8})-(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,99})")


class UploadError(SoftPromptError):
    """An upload refused; `status` is the HTTP status the page gets (413 too big, 422 unreadable)."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


@dataclass
class UploadInfo:
    id: str  # stored file name, the handle the page sends back to train on it
    name: str  # the name the user uploaded
    bytes: int
    rows: int
    columns: list[str]
    preview: list[dict[str, str]]
    text_column: str | None  # best guess: the column with the longest texts
    label_column: str | None  # best guess: a column with few distinct values
    label_counts: dict[str, int] = field(default_factory=dict)  # of the guessed label column (chat: final replies)
    chat: bool = False  # rows of OpenAI `messages`: trained with a chat task kind, no columns to choose

    def to_dict(self) -> dict:
        return asdict(self)


def safe_name(filename: str) -> str:
    """A harmless file name keeping the user's readable part and extension; raises UploadError if none is left."""
    base = re.split(r"[/\\]", filename or "")[-1]
    base = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode()
    suffix = next((s for s in ALLOWED_SUFFIXES if base.lower().endswith(s)), None)
    if suffix is None:
        shown = filename[-60:] if filename else "(no name)"
        raise UploadError(
            f"'{shown}': unsupported file type; upload a {', '.join(ALLOWED_SUFFIXES)} file "
            "(uncompressed; .json must hold JSON Lines)"
        )
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", base[: -len(suffix)])
    stem = re.sub(r"\.{2,}", ".", stem).lstrip("._-").rstrip(".")[:60] or "data"
    return stem + suffix.lower()


class UploadStore:
    """Data files under `folder`, each at most `max_bytes`, all together at most `max_total_bytes`."""

    def __init__(
        self, folder: str | Path, max_bytes: int = DEFAULT_MAX_BYTES, max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES
    ):
        if max_bytes < 1 or max_total_bytes < 1:
            raise SoftPromptError(f"upload limits must be at least 1 byte, got {max_bytes} and {max_total_bytes}")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.root = self.folder.resolve()
        self.max_bytes, self.max_total_bytes = max_bytes, max_total_bytes
        self._parsing = asyncio.Semaphore(PARSE_SLOTS)

    def path(self, upload_id: str) -> Path:
        """The stored file for `upload_id`; refuses anything that is not a direct child of the folder."""
        if not isinstance(upload_id, str) or not ID_RE.fullmatch(upload_id):
            raise UploadError(f"no uploaded file {str(upload_id)[:80]!r}; upload the file again", status=404)
        path = (self.root / upload_id).resolve()
        if path.parent != self.root or not path.is_file():
            raise UploadError(f"no uploaded file {upload_id!r}; upload the file again", status=404)
        return path

    def shown_name(self, upload_id: str) -> str:
        """The (sanitised) name the user uploaded the file under, for messages and lists."""
        self.path(upload_id)
        return ID_RE.fullmatch(upload_id)["name"]

    def used_bytes(self) -> int:
        return sum(entry["bytes"] for entry in self.list())

    def delete(self, upload_id: str) -> None:
        self.path(upload_id).unlink(missing_ok=True)

    async def save(self, filename: str, chunks: AsyncIterator[bytes]) -> UploadInfo:
        """Write the body to the folder (within both limits), validate it on a worker thread, and describe it."""
        name = safe_name(filename)
        upload_id = f"{secrets.token_hex(4)}-{name}"
        tmp = self.root / f".{upload_id}.part"
        room = self.max_total_bytes - self.used_bytes()
        size = 0
        try:
            with open(tmp, "wb") as f:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise UploadError(
                            f"'{filename[-60:]}' is larger than the upload limit of {_mb(self.max_bytes)}; "
                            "upload a smaller sample",
                            status=413,
                        )
                    if size > room:
                        raise UploadError(
                            f"'{filename[-60:]}' does not fit: uploads may use {_mb(self.max_total_bytes)} in all "
                            f"and {_mb(self.max_total_bytes - room)} are taken; delete uploads you no longer need",
                            status=413,
                        )
                    f.write(chunk)
            if size == 0:
                raise UploadError(f"'{filename[-60:]}' is empty")
            final = self.root / upload_id
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        try:
            async with self._parsing:
                return await asyncio.to_thread(describe, final, upload_id, filename[-100:])
        except BaseException:
            final.unlink(missing_ok=True)  # an unreadable file is not kept
            raise

    def list(self) -> list[dict]:
        """Uploaded files, newest first: id, shown name, bytes."""
        found = []
        for entry in self.root.iterdir():
            match = ID_RE.fullmatch(entry.name)
            if not match or entry.is_symlink():
                continue
            try:
                st = entry.stat()
            except OSError:  # deleted meanwhile
                continue
            if stat.S_ISREG(st.st_mode):
                found.append((st.st_mtime, {"id": entry.name, "name": match["name"], "bytes": st.st_size}))
        return [info for _, info in sorted(found, key=lambda f: f[0], reverse=True)]


def describe(path: Path, upload_id: str, shown_name: str) -> UploadInfo:
    """Read every row (so errors surface now); columns, preview, guessed text and label columns."""
    columns: dict[str, None] = {}
    preview: list[dict[str, str]] = []
    values: dict[str, Counter] = {}
    lengths: Counter = Counter()
    rows = 0
    try:
        for _, row in read_rows(path, name=shown_name):
            rows += 1
            for key, value in row.items():
                columns.setdefault(str(key), None)
                text = "" if value is None else str(value)
                lengths[str(key)] += len(text)
                seen = values.setdefault(str(key), Counter())
                if len(seen) <= MAX_LABELS:
                    seen[text] += 1
            if len(preview) < PREVIEW_ROWS:
                preview.append({str(k): ("" if v is None else str(v))[:300] for k, v in row.items()})
    except DataError as e:
        raise UploadError(str(e)) from None
    if rows == 0:
        raise UploadError(f"{shown_name}: no data rows (a header alone is not enough)")
    if MESSAGES_COLUMN in columns:
        return _describe_chat(path, upload_id, shown_name, rows)
    if len(columns) < 2:
        raise UploadError(
            f"{shown_name}: only one column ({', '.join(columns) or 'none'}); a training file needs a text "
            "column and a label (or target) column"
        )
    text_column = max(columns, key=lambda c: lengths[c])
    label_column = _guess_label_column(columns, values, rows, exclude=text_column)
    counts = dict(values[label_column].most_common()) if label_column else {}
    return UploadInfo(
        id=upload_id,
        name=shown_name,
        bytes=path.stat().st_size,
        rows=rows,
        columns=list(columns),
        preview=preview,
        text_column=text_column,
        label_column=label_column,
        label_counts=counts,
    )


def _describe_chat(path: Path, upload_id: str, shown_name: str, rows: int) -> UploadInfo:
    """A conversations file: every row checked now (file:line), a preview of each conversation, the final replies."""
    try:
        loaded = load_examples(path, name=shown_name, messages=True)
    except DataError as e:
        raise UploadError(str(e)) from None
    preview = [
        {MESSAGES_COLUMN: " | ".join(f"{t['role']}: {t['content']}" for t in json.loads(ex.input))[:300]}
        for ex in loaded.examples[:PREVIEW_ROWS]
    ]
    replies = Counter(ex.output for ex in loaded.examples)
    counts = dict(replies.most_common()) if len(replies) <= MAX_LABELS else {}
    return UploadInfo(
        id=upload_id,
        name=shown_name,
        bytes=path.stat().st_size,
        rows=rows,
        columns=[MESSAGES_COLUMN],
        preview=preview,
        text_column=MESSAGES_COLUMN,
        label_column=None,
        label_counts=counts,
        chat=True,
    )


def _guess_label_column(columns, values: dict[str, Counter], rows: int, *, exclude: str) -> str | None:
    """The column with the fewest distinct values (2..MAX_LABELS), preferring one named like a label."""
    named = ("label", "labels", "category", "class", "target", "sentiment", "topic", "y")
    candidates = [c for c in columns if c != exclude and 2 <= len(values.get(c, ())) <= min(MAX_LABELS, rows)]
    if not candidates:
        others = [c for c in columns if c != exclude]
        return others[0] if others else None
    return min(candidates, key=lambda c: (c.lower() not in named, len(values[c])))


def _mb(n: int) -> str:
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n:,} bytes"
