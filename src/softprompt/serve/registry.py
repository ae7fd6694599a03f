"""PromptRegistry: the prompt folders under one directory, kept in step with the disk.

Every direct sub-folder of DIR whose name is a valid prompt name is loaded
with `methods.load_prompt` (plain or deep prompts; JSON + safetensors only, never a pickle) and handed to
the predictor. `refresh()` compares a cheap signature of each folder (inode and
mtimes/sizes of its two files, i.e. a few `stat` calls) with the last one seen,
so polling it every second costs nothing, and a prompt added, replaced
(a prompt's `save` swaps the folder in atomically, so the inode changes) or
removed is noticed without a restart.

Requests only ever look names up in memory: a name is never joined to a path,
so no request can make the server read outside DIR. Names are also validated
(letters, digits, `.`, `_`, `-`; no leading dot) and folders that are symlinks
pointing outside DIR are skipped.

One broken folder never stops the others: whatever goes wrong while loading
it (a `SoftPromptError` for a file we could not use, any other exception for
a bug) is caught for that folder alone, logged, and kept in `errors` (shown by
/health) with paths relative to DIR, so the messages give nothing away about
the server's file system.

`refresh()` mutates the predictor, so the server runs it on the model's worker
thread (between batches); readers on other threads see `infos`, a dict that is
replaced, never mutated.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SoftPromptError
from ..models import BaseModel
from ..prompts.base import BasePrompt
from ..prompts.files import CONFIG_FILE, WEIGHTS_FILE
from ..prompts.methods import load_prompt
from ..tasks import task_from_meta

log = logging.getLogger("softprompt.serve")

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
NAME_RULE = "1-128 characters: letters, digits, '.', '_' or '-', not starting with '.', '_' or '-'"


def name_problem(name: object) -> str | None:
    """Why `name` cannot be a prompt name, or None if it can."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or ".." in name:
        return f"invalid prompt name {str(name)[:64]!r}: a prompt name is {NAME_RULE}"
    return None


@dataclass(frozen=True)
class PromptInfo:
    """What the API shows about one loaded prompt."""

    name: str
    task: str | None
    labels: list[str] | None
    num_virtual_tokens: int
    bytes: int
    template: str | None = None
    base_model: str | None = None
    method: str = "prompt"  # methods.py: prompt (input vectors) or prefix (keys/values in every layer)


@dataclass(frozen=True)
class Changes:
    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.added or self.replaced or self.removed or self.failed)


class PromptRegistry:
    """Prompts under `folder`, loaded into `predictor` (anything with add_prompt/remove_prompt)."""

    def __init__(self, folder: str | Path, predictor, base: BaseModel | None = None):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise SoftPromptError(f"--prompts '{folder}' is not a directory; create it or point at your prompt folders")
        self.root = self.folder.resolve()
        self.predictor = predictor
        self.base = base
        self.infos: dict[str, PromptInfo] = {}
        self.errors: dict[str, str] = {}  # folder name -> why it is not served
        self._signatures: dict[str, tuple] = {}

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.infos

    def get(self, name: str) -> PromptInfo | None:
        return self.infos.get(name)

    def refresh(self) -> Changes:
        """Load new and changed folders, drop removed ones; return what changed."""
        seen = self._scan()
        infos, errors = dict(self.infos), dict(self.errors)
        changes = Changes()
        for name in sorted(set(self._signatures) - set(seen)):
            if infos.pop(name, None) is not None:
                self.predictor.remove_prompt(name)
                changes.removed.append(name)
            errors.pop(name, None)
            del self._signatures[name]
        for name, (path, signature) in sorted(seen.items()):
            if self._signatures.get(name) == signature:
                continue
            self._signatures[name] = signature
            try:
                prompt = load_prompt(path, self.base)
                info = _info(name, path, prompt)
                self.predictor.add_prompt(name, prompt)  # replaces any earlier version
            except Exception as e:  # noqa: BLE001 -- whatever breaks one folder must not stop the others
                message = self._relative(str(e) if isinstance(e, SoftPromptError) else f"{type(e).__name__}: {e}")
                errors[name] = changes.failed[name] = message
                if infos.pop(name, None) is not None:
                    self.predictor.remove_prompt(name)
                if isinstance(e, SoftPromptError):
                    log.warning("prompt %s not served: %s", name, e)
                else:  # not a file we recognise as bad: a bug to report, with its traceback
                    log.exception("prompt %s not served: unexpected error", name)
                continue
            errors.pop(name, None)
            (changes.replaced if name in infos else changes.added).append(name)
            infos[name] = info
        self.infos, self.errors = infos, errors
        if changes:
            log.info(
                "prompts: %d served; added %s, replaced %s, removed %s, failed %s",
                len(infos), changes.added, changes.replaced, changes.removed, list(changes.failed),
            )  # fmt: skip
        return changes

    def _relative(self, message: str) -> str:
        """`message` with the prompts folder's own path removed: 'p/adapter_config.json', not '/srv/.../p/...'."""
        for prefix in sorted({str(self.folder), str(self.root), str(self.folder.absolute())}, key=len, reverse=True):
            message = message.replace(prefix + os.sep, "")
        return message

    def _scan(self) -> dict[str, tuple[Path, tuple]]:
        """name -> (folder, signature) for every candidate prompt folder."""
        found = {}
        try:
            entries = list(os.scandir(self.folder))
        except OSError as e:
            log.warning("cannot list %s: %s", self.folder, e)
            return {name: (self.folder / name, sig) for name, sig in self._signatures.items()}
        for entry in entries:
            try:
                if name_problem(entry.name) or not entry.is_dir():
                    continue  # temp folders of atomic saves start with '.', and files are not prompts
                path = Path(entry.path)
                if entry.is_symlink() and not path.resolve().is_relative_to(self.root):
                    continue
            except (OSError, RuntimeError) as e:  # e.g. a symlink loop: skip this entry, keep scanning
                log.warning("skipping %s: %s", entry.path, e)
                continue
            signature = _signature(path)
            if signature is not None:
                found[entry.name] = (path, signature)
        return found


def _signature(path: Path) -> tuple | None:
    """Cheap identity of a prompt folder's contents; None while it is not a prompt folder yet."""
    try:
        parts = [path.stat().st_ino]
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            st = (path / name).stat()
            parts += [st.st_ino, st.st_mtime_ns, st.st_size]
    except OSError:
        return None
    return tuple(parts)


def _info(name: str, path: Path, prompt: BasePrompt) -> PromptInfo:
    meta = prompt.meta
    try:
        labels = list(task_from_meta(meta).labels) or None
    except SoftPromptError:  # no task stored (e.g. a PEFT file): served for generation only
        labels = None
    return PromptInfo(
        name=name,
        task=meta.task,
        labels=labels,
        num_virtual_tokens=prompt.num_virtual_tokens,
        bytes=prompt.file_size(path),
        template=meta.template,
        base_model=meta.base_model,
        method=prompt.METHOD,
    )
