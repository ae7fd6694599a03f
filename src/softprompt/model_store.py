"""Where models live on disk: the cache folder, and what each cached model was made from.

Kept free of torch so `softprompt models list` answers at once. Every entry
under `models/` is a folder written atomically, with a `source.json` saying
what it was made from (the source file's hash, the quantisation), so a listing
can tell the user what the gigabytes are.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

SOURCE_FILE = "source.json"


def cache_dir() -> Path:
    """Where converted models live: $SOFTPROMPT_CACHE, else the user's cache directory."""
    if env := os.environ.get("SOFTPROMPT_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "softprompt"


def models_dir() -> Path:
    """Converted and quantised models, one folder each."""
    return cache_dir() / "models"


def gguf_dir() -> Path:
    """Built-in GGUF files assembled from their parts."""
    return cache_dir() / "gguf"


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def cached_models() -> list[dict]:
    """One record per cached model folder: its path, size on disk and what it was made from."""
    root = models_dir()
    if not root.is_dir():
        return []
    rows = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            source = json.loads((folder / SOURCE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            source = {"quantization": "none"}  # converted before source.json existed: an fp32 copy
        rows.append({"path": str(folder), "bytes": folder_size(folder), **source})
    return rows


def file_digest(path: Path) -> str:
    """The sha256 of `path`, remembered by (size, mtime) so a multi-GB file is hashed once, not per load."""
    import contextlib
    import hashlib

    from .fileio import write_json_atomic

    stat = path.stat()
    memo_file = cache_dir() / "digests.json"
    try:
        memo = json.loads(memo_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        memo = {}
    key = str(path.resolve())
    known = memo.get(key)
    if isinstance(known, list) and known[:2] == [stat.st_size, stat.st_mtime_ns]:
        return known[2]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    memo[key] = [stat.st_size, stat.st_mtime_ns, digest.hexdigest()]
    with contextlib.suppress(OSError):  # a read-only cache only costs hashing again next time
        write_json_atomic(memo_file, memo)
    return digest.hexdigest()
