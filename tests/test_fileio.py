"""Atomic writes: permissions as the umask says, a crash cleaned up by the next run, outputs checked first."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from softprompt import fileio
from softprompt.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from softprompt.errors import SoftPromptError
from softprompt.fileio import check_output_path, recover_dir, write_dir_atomic, write_text_atomic
from softprompt.prompts.plain import SoftPrompt


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


# -- after a crash --------------------------------------------------------------------------------


def fill_with(text: str):
    def fill(tmp: Path) -> None:
        (tmp / "a.txt").write_text(text)

    return fill


def crash_during_save(folder: Path, *, at_rename: int) -> None:
    """In a child process, save a checkpoint over `folder` and die (SIGKILL-like os._exit) at its nth rename."""
    code = f"""
        import os, torch
        from softprompt.checkpoint import Checkpoint, save_checkpoint
        renames, real = [0], os.rename
        def rename(a, b):
            renames[0] += 1
            if renames[0] == {at_rename}:
                os._exit(9)
            real(a, b)
        os.rename = rename
        save_checkpoint({str(folder)!r}, Checkpoint({{"p": torch.full((2,), 2.0)}}, {{"step": 2}}))
        os._exit(0)
    """
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], timeout=120)
    assert done.returncode == (9 if at_rename else 0)


def siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir() if p.name != folder.name)


@pytest.mark.parametrize("at_rename", [1, 2])
def test_a_save_killed_midway_is_cleaned_up_and_the_last_checkpoint_survives(tmp_path, at_rename):
    """Killed before its first rename (the new folder built, the old in place) or between its two renames."""
    folder = tmp_path / "out" / "checkpoint"
    save_checkpoint(folder, Checkpoint({"p": torch.ones(2)}, {"step": 1}))
    crash_during_save(folder, at_rename=at_rename)
    assert siblings(folder)  # the crash left its temporary folders
    kept = load_checkpoint(folder)  # what --resume does first
    assert kept.values == {"step": 1} and torch.equal(kept.tensors["p"], torch.ones(2))
    assert siblings(folder) == []
    save_checkpoint(folder, Checkpoint({"p": torch.zeros(2)}, {"step": 3}))
    assert load_checkpoint(folder).values == {"step": 3} and siblings(folder) == []


def test_the_next_save_cleans_up_too(tmp_path):
    folder = tmp_path / "checkpoint"
    save_checkpoint(folder, Checkpoint({"p": torch.ones(2)}, {"step": 1}))
    crash_during_save(folder, at_rename=2)  # the old one moved aside, the new one not yet in place
    assert not folder.exists()
    save_checkpoint(folder, Checkpoint({"p": torch.zeros(2)}, {"step": 4}))
    assert load_checkpoint(folder).values == {"step": 4} and siblings(folder) == []


def test_recover_touches_only_our_own_temporary_names(tmp_path):
    target = tmp_path / "prompt"
    write_dir_atomic(target, fill_with("new"))
    ours = [tmp_path / ".prompt.abcd1234.tmp", tmp_path / ".prompt.x_y9zz00.old", tmp_path / ".prompt.0a1b2c3d.tmp"]
    ours[0].mkdir()
    ours[1].mkdir()
    ours[2].write_text("half a file")
    others = [tmp_path / ".prompt.tmp", tmp_path / ".prompt.abcd1234.tmp.keep", tmp_path / ".other.abcd1234.tmp"]
    others += [tmp_path / "prompt.abcd1234.tmp", tmp_path / ".prompt.abc.tmp"]
    for path in others:
        path.mkdir()
    assert sorted(recover_dir(target)) == sorted(ours)
    assert all(path.exists() for path in others) and not any(path.exists() for path in ours)
    assert (target / "a.txt").read_text() == "new"


def test_recover_puts_the_newest_previous_folder_back(tmp_path):
    target = tmp_path / "ckpt"
    for name, text in ((".ckpt.aaaaaaaa.old", "older"), (".ckpt.bbbbbbbb.old", "newer")):
        (tmp_path / name / "previous").mkdir(parents=True)
        (tmp_path / name / "previous" / "a.txt").write_text(text)
        os.utime(tmp_path / name / "previous", (1e9 if text == "older" else 2e9,) * 2)
    recover_dir(target)
    assert (target / "a.txt").read_text() == "newer" and siblings(target) == []


# -- output paths ---------------------------------------------------------------------------------


def test_output_paths_that_can_be_written(tmp_path):
    assert check_output_path(tmp_path / "new" / "deeper" / "prompt", flag="--out", folder=True)
    (tmp_path / "existing").mkdir()
    assert check_output_path(tmp_path / "existing", flag="--out", folder=True)
    assert check_output_path(tmp_path / "out.jsonl", flag="--output", folder=False)
    assert list(tmp_path.iterdir()) == [tmp_path / "existing"]  # the check creates nothing


def test_output_paths_in_the_way(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(SoftPromptError, match=r"--out .*file: is a file, and the output is a folder"):
        check_output_path(tmp_path / "file", flag="--out", folder=True)
    with pytest.raises(SoftPromptError, match=r"file is a file, so nothing can be created under it"):
        check_output_path(tmp_path / "file" / "sub" / "prompt", flag="--out", folder=True)
    with pytest.raises(SoftPromptError, match=r"--output .*: is a folder; give the path of a file"):
        check_output_path(tmp_path, flag="--output", folder=False)


@pytest.mark.parametrize(
    "code,words", [(errno.EROFS, "read-only"), (errno.EACCES, "permissions"), (errno.ENOSPC, "disk is full")]
)
def test_unwritable_places_are_refused_with_what_to_do(tmp_path, monkeypatch, code, words):
    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code), str(tmp_path / ".softprompt-probe-x"))

    monkeypatch.setattr(fileio.tempfile, "mkstemp", refuse)
    with pytest.raises(SoftPromptError, match=rf"--out .*: cannot write in {tmp_path}: .*{words}"):
        check_output_path(tmp_path / "prompt", flag="--out", folder=True)


def test_a_full_disk_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(fileio.shutil, "disk_usage", lambda p: type("U", (), {"free": 4096})())
    with pytest.raises(SoftPromptError, match="is full; free some space"):
        check_output_path(tmp_path / "prompt", flag="--out", folder=True)
