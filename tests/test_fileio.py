"""Atomic writes give what they write the umask's normal permissions, not tempfile's private ones."""

from __future__ import annotations

import contextlib
import os
import stat

import pytest

from softprompt.fileio import write_dir_atomic, write_text_atomic
from softprompt.prompt import SoftPrompt


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize(("mask", "dir_mode", "file_mode"), [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)])
def test_a_saved_prompt_folder_is_readable_as_the_umask_says(tiny_models, tmp_path, mask, dir_mode, file_mode):
    # A prompt published by one user must be readable by a server running as another (umask 022).
    base = tiny_models("llama")
    with umask(mask):
        folder = SoftPrompt.initialize(base, 4, "random").save(tmp_path / "p", base)
        SoftPrompt.initialize(base, 4, "random", seed=1).save(folder, base)  # replacing keeps them too
    assert mode(folder) == dir_mode
    files = sorted(folder.iterdir())
    assert len(files) == 3 and {mode(f) for f in files} == {file_mode}  # safetensors writes 0600 by itself


def test_nested_folders_and_single_files_get_normal_permissions_too(tmp_path):
    def fill(tmp):
        (tmp / "sub").mkdir(mode=0o700)
        (tmp / "sub" / "x.json").write_text("{}")
        os.chmod(tmp / "sub" / "x.json", 0o600)

    with umask(0o022):
        write_dir_atomic(tmp_path / "d", fill)
        write_text_atomic(tmp_path / "f.txt", "hello")
    assert (mode(tmp_path / "d" / "sub"), mode(tmp_path / "d" / "sub" / "x.json")) == (0o755, 0o644)
    assert mode(tmp_path / "f.txt") == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "f.txt"]  # no temp debris
