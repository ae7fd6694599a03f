"""The studio's data folder (prompts/, uploads/, jobs/, cache/) and the arithmetic of its quotas."""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path


@dataclasses.dataclass
class DataFolder:
    """The studio's layout inside --data-dir."""

    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        for sub in (self.prompts, self.uploads, self.jobs, self.cache):
            sub.mkdir(parents=True, exist_ok=True)

    prompts = property(lambda self: self.root / "prompts")
    uploads = property(lambda self: self.root / "uploads")
    jobs = property(lambda self: self.root / "jobs")
    cache = property(lambda self: self.root / "cache")


def folder_bytes(folder: Path) -> int:
    """Bytes of the regular files under `folder` (symlinks not followed; files vanishing meanwhile skipped)."""
    total = 0
    for parent, _, names in os.walk(folder):
        for name in names:
            try:
                st = os.lstat(os.path.join(parent, name))
            except OSError:
                continue
            total += st.st_size if stat.S_ISREG(st.st_mode) else 0
    return total


def trim_to(folder: Path, max_bytes: int, *, keep: Path | None = None) -> int:
    """Delete the oldest files directly in `folder` until the rest fit in `max_bytes`; returns bytes deleted.

    `keep` (the file just written) is never deleted.
    """
    files = []
    for entry in os.scandir(folder):
        if entry.is_file(follow_symlinks=False):
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            files.append((st.st_mtime_ns, st.st_size, Path(entry.path)))
    used = sum(size for _, size, _ in files)
    deleted = 0
    for _, size, path in sorted(files, key=lambda f: f[0]):
        if used <= max_bytes:
            break
        if keep is not None and path == keep:
            continue
        path.unlink(missing_ok=True)
        used -= size
        deleted += size
    return deleted
