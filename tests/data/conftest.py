"""Helpers the data tests share: small data files written into a test's folder."""

import json
from pathlib import Path


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


def jsonl(path: Path, rows: list[object]) -> Path:
    return write(path, "".join(json.dumps(r) + "\n" for r in rows))
