"""Atomic writes: a crash mid-write leaves the old file (or folder) or the new one, never half.

What is written gets the permissions the umask gives a normal file or folder
(0644/0755 under umask 022), not the private 0600/0700 of `tempfile`: a prompt
folder published by one user must be readable by a server running as another.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import SoftPromptError, describe_os_error

# check_output_path refuses a disk with less free space than this: it could not hold a prompt folder and a
# checkpoint, and saying so before the model loads spares a run that would fail when it writes.
MIN_FREE_BYTES = 2**20


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created with mode 0666 so the umask, not tempfile's 0600, decides who may read it.
    tmp = _fresh(path, lambda p: os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)))
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | Path, obj: object) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_dir_atomic(path: str | Path, fill: Callable[[Path], None]) -> None:
    """Build a folder with `fill(tmp_dir)`, then swap it in for `path` in one rename.

    An existing folder at `path` is moved aside first and removed after, so
    readers (a server watching the prompt folder) never see a mix of old and
    new files.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _fresh(path, os.mkdir)  # mode 0777 less the umask
    old = None
    try:
        fill(tmp)
        _normal_permissions(tmp)
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.rename(path, old / "previous")
        os.rename(tmp, path)
    except BaseException:
        if old is not None and not path.exists():
            os.rename(old / "previous", path)  # put the old folder back
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _fresh(path: Path, create: Callable[[Path], None]) -> Path:
    """A new, unused `.<name>.<random>.tmp` beside `path`, made by `create` (which fails if it exists)."""
    while True:
        candidate = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            create(candidate)
        except FileExistsError:
            continue
        return candidate


def _normal_permissions(folder: Path) -> None:
    """Give everything under `folder` the mode a plain open()/mkdir() would (writers such as
    safetensors create their files 0600); the folder itself was made with the umask applied."""
    dir_mode = folder.stat().st_mode & 0o777
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            os.chmod(os.path.join(root, name), dir_mode)
        for name in files:
            os.chmod(os.path.join(root, name), dir_mode & 0o666)


# -- after a crash, and before a long run ------------------------------------------------------------


def _leftover_name(name: str) -> re.Pattern:
    # What write_dir_atomic and atomic_path call their siblings: ".<name>.<8 random characters>.tmp" or ".old".
    return re.compile(rf"\.{re.escape(name)}\.[A-Za-z0-9_]{{8}}\.(tmp|old)")


def recover_dir(path: str | Path) -> list[Path]:
    """Undo what a crash inside `write_dir_atomic(path, ...)` left behind; return the leftovers removed.

    A crash between its two renames leaves no folder at `path` and the previous
    one inside a `.old` sibling: that one is put back. Temporary siblings are
    removed. Only the single writer of `path` may call this (a trainer for its
    checkpoint): another writer's temporary folder would be in use.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    pattern = _leftover_name(path.name)
    leftovers = sorted(p for p in path.parent.iterdir() if pattern.fullmatch(p.name))
    if not path.exists():
        kept = [p / "previous" for p in leftovers if p.name.endswith(".old") and (p / "previous").is_dir()]
        if kept:
            os.rename(max(kept, key=lambda p: p.stat().st_mtime), path)
    for leftover in leftovers:
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
    return leftovers


def check_output_path(path: str | Path, *, flag: str, folder: bool) -> Path:
    """Refuse an output path that cannot be written, before any slow work: SoftPromptError naming `flag`.

    `folder`: the command writes a folder at `path` (else a file). The nearest
    existing ancestor must be a folder we can create files in (probed by creating
    one: permission bits do not tell about read-only mounts or ACLs) on a disk
    with space left.
    """
    path = Path(path)
    if path.exists() and folder and not path.is_dir():
        raise SoftPromptError(f"{flag} {path}: is a file, and the output is a folder; choose another {flag}")
    if path.is_dir() and not folder:
        raise SoftPromptError(f"{flag} {path}: is a folder; give the path of a file to write")
    existing = path if path.is_dir() else path.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise SoftPromptError(f"{flag} {path}: {existing} is a file, so nothing can be created under it")
    try:
        fd, probe = tempfile.mkstemp(prefix=".softprompt-probe-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise SoftPromptError(f"{flag} {path}: cannot write in {existing}: {describe_os_error(e)}") from None
    if shutil.disk_usage(existing).free < MIN_FREE_BYTES:
        raise SoftPromptError(
            f"{flag} {path}: the disk holding {existing} is full; free some space or choose a path on another disk"
        )
    return path
