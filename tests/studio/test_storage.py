"""The data folder's quota arithmetic: sizes and trimming the plot cache oldest-first."""

from __future__ import annotations

import os

from softprompt.studio.storage import DataFolder, folder_bytes, trim_to


def test_data_folder_has_its_four_parts(tmp_path):
    folders = DataFolder(tmp_path / "d")
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["cache", "jobs", "prompts", "uploads"]
    assert folders.cache == tmp_path / "d" / "cache"


def test_trim_removes_the_oldest_files_first_and_keeps_the_new_one(tmp_path):
    for i, name in enumerate(["old.png", "mid.png", "new.png"]):
        path = tmp_path / name
        path.write_bytes(b"x" * 100)
        os.utime(path, ns=(i * 10**9, i * 10**9))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "f").write_bytes(b"y" * 7)
    (tmp_path / "link").symlink_to(tmp_path / "new.png")
    assert folder_bytes(tmp_path) == 307  # the symlink is not counted
    assert trim_to(tmp_path, 250, keep=tmp_path / "old.png") == 100
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["new.png", "old.png"]
    assert trim_to(tmp_path, 0) == 200 and not list(tmp_path.glob("*.png"))
