"""PromptRegistry: loads prompt folders, notices added/replaced/removed ones, refuses bad names and files."""

from __future__ import annotations

import json
import shutil

import pytest

from softprompt.errors import SoftPromptError
from softprompt.prompts.files import CONFIG_FILE, WEIGHTS_FILE
from softprompt.serve.registry import PromptRegistry, name_problem
from softprompt.testing import tiny_base

from .conftest import BROKEN, break_folder, save_prompt


class RecordingPredictor:
    def __init__(self):
        self.prompts = {}

    def add_prompt(self, name, prompt):
        self.prompts[name] = prompt

    def remove_prompt(self, name):
        del self.prompts[name]


@pytest.mark.parametrize("name", ["sent", "a.b_c-1", "X" * 128])
def test_valid_names(name):
    assert name_problem(name) is None


@pytest.mark.parametrize("name", ["", "..", "../etc", "a/b", ".hidden", "-x", "a b", "a..b", "X" * 129, "é", None, 5])
def test_invalid_names(name):
    assert "invalid prompt name" in name_problem(name)


def test_loads_prompts_and_skips_what_is_not_one(base, tmp_path):
    save_prompt(base, tmp_path / "sent", t=4)
    save_prompt(base, tmp_path / "gen", t=3, task="generate")
    save_prompt(base, tmp_path / ".sent.tmp", t=2)  # an atomic save in progress
    (tmp_path / "notes.txt").write_text("not a prompt")
    (tmp_path / "empty").mkdir()
    pickle_only = tmp_path / "pickled"
    pickle_only.mkdir()
    (pickle_only / CONFIG_FILE).write_text(json.dumps({"peft_type": "PROMPT_TUNING"}))
    (pickle_only / "adapter_model.bin").write_bytes(b"\x80\x04not loaded")  # never read: safetensors only
    predictor = RecordingPredictor()
    registry = PromptRegistry(tmp_path, predictor, base)
    changes = registry.refresh()
    assert sorted(changes.added) == ["gen", "sent"]
    assert sorted(predictor.prompts) == ["gen", "sent"]
    info = registry.get("sent")
    assert (info.task, info.labels, info.num_virtual_tokens) == ("classify", ["pos", "neg"], 4)
    assert info.bytes == sum(p.stat().st_size for p in (tmp_path / "sent").iterdir())
    assert registry.get("gen").labels is None
    assert not registry.refresh()  # nothing changed: nothing reloaded


def test_notices_added_replaced_and_removed(base, tmp_path):
    predictor = RecordingPredictor()
    registry = PromptRegistry(tmp_path, predictor, base)
    assert not registry.refresh()
    save_prompt(base, tmp_path / "a", t=4, seed=1)
    assert registry.refresh().added == ["a"]
    old = predictor.prompts["a"]
    save_prompt(base, tmp_path / "a", t=7, seed=2)  # atomic replace
    assert registry.refresh().replaced == ["a"]
    assert predictor.prompts["a"] is not old and registry.get("a").num_virtual_tokens == 7
    shutil.rmtree(tmp_path / "a")
    assert registry.refresh().removed == ["a"]
    assert "a" not in predictor.prompts and "a" not in registry


def test_corrupt_or_foreign_prompt_is_reported_not_served_and_recovers(base, tmp_path):
    predictor = RecordingPredictor()
    registry = PromptRegistry(tmp_path, predictor, base)
    folder = save_prompt(base, tmp_path / "p", t=4)
    (folder / WEIGHTS_FILE).write_bytes(b"garbage")
    save_prompt(tiny_base("gpt2"), tmp_path / "other-model", t=4)  # made for another base model
    changes = registry.refresh()
    assert sorted(changes.failed) == ["other-model", "p"]
    assert "not a readable safetensors" in registry.errors["p"]
    assert "other-model" in registry.errors and "p" not in registry
    save_prompt(base, tmp_path / "p", t=4)
    assert registry.refresh().added == ["p"]
    assert "p" not in registry.errors


def test_symlink_out_of_the_folder_is_not_followed(base, tmp_path):
    inside, outside = tmp_path / "prompts", tmp_path / "elsewhere"
    inside.mkdir()
    save_prompt(base, outside / "secret", t=4)
    (inside / "link").symlink_to(outside / "secret")
    registry = PromptRegistry(inside, RecordingPredictor(), base)
    registry.refresh()
    assert "link" not in registry


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(SoftPromptError, match="not a directory"):
        PromptRegistry(tmp_path / "nope", RecordingPredictor())


# -- broken folders: each is reported alone, the rest keep serving -----------------------------


def test_each_broken_folder_is_reported_alone_with_relative_paths(base, tmp_path):
    for kind in BROKEN:
        break_folder(base, tmp_path / kind, kind)
    save_prompt(base, tmp_path / "good", t=4)
    registry = PromptRegistry(tmp_path, RecordingPredictor(), base)
    changes = registry.refresh()
    assert changes.added == ["good"] and sorted(changes.failed) == sorted(BROKEN)
    for kind, message in BROKEN.items():
        assert message in registry.errors[kind], registry.errors[kind]
        assert str(tmp_path) not in registry.errors[kind]  # nothing about the server's file system
    assert registry.errors["not_json"].startswith(f"not_json/{CONFIG_FILE}: not valid JSON")


def test_a_rescan_with_broken_folders_still_adds_and_removes_the_others(base, tmp_path):
    save_prompt(base, tmp_path / "old", t=4)
    predictor = RecordingPredictor()
    registry = PromptRegistry(tmp_path, predictor, base)
    registry.refresh()
    for kind in BROKEN:
        break_folder(base, tmp_path / kind, kind)
    save_prompt(base, tmp_path / "new", t=4)
    shutil.rmtree(tmp_path / "old")
    changes = registry.refresh()
    assert changes.added == ["new"] and changes.removed == ["old"] and sorted(changes.failed) == sorted(BROKEN)
    assert sorted(predictor.prompts) == ["new"] and sorted(registry.infos) == ["new"]


def test_an_unexpected_exception_is_isolated_too(base, tmp_path, monkeypatch, caplog):
    save_prompt(base, tmp_path / "good", t=4)
    save_prompt(base, tmp_path / "buggy", t=4)

    class Picky(RecordingPredictor):
        def add_prompt(self, name, prompt):
            if name == "buggy":
                raise ZeroDivisionError("a bug somewhere")
            super().add_prompt(name, prompt)

    registry = PromptRegistry(tmp_path, Picky(), base)
    changes = registry.refresh()
    assert changes.added == ["good"]
    assert registry.errors == {"buggy": "ZeroDivisionError: a bug somewhere"}
    assert "Traceback" in caplog.text  # a bug: its traceback goes to the log
