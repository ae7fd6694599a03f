"""--quantize: one flag, one default, on every command that loads a model, and its value reaches the loader."""

from __future__ import annotations

import argparse
import importlib
import json
import sys

import pytest

from softprompt import models
from softprompt.cli import COMMANDS, build_parser, main
from softprompt.commands.options import DEFAULT_QUANTIZE, QUANTIZE_MODES
from softprompt.errors import EXIT_USAGE, SoftPromptError
from softprompt.prompts.meta import PromptMeta
from softprompt.prompts.plain import SoftPrompt
from softprompt.testing import tiny_base

READS_FILES_ONLY = {"info", "models"}  # commands that never load a model (models: install/list, quant-load's)


def _argv(tmp_path) -> dict[str, list[str]]:
    """Per command, a command line that gets as far as loading the model."""
    rows = [{"text": f"text {i}", "label": "ab"[i % 2]} for i in range(20)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "in.txt").write_text("hello\n")
    (tmp_path / "prompts").mkdir()
    meta = PromptMeta(task="classify", template="{text}", verbalizer={"a": "a", "b": "b"})
    prompt = str(SoftPrompt.initialize(tiny_base("llama"), 2, "random", meta=meta).save(tmp_path / "p"))
    data = str(tmp_path / "d.jsonl")
    return {
        "quickstart": ["quickstart", "--out", str(tmp_path / "q")],
        "train": ["train", "--data", data, "--out", str(tmp_path / "t")],
        "eval": ["eval", "--data", data],
        "predict": ["predict", "--prompt", prompt, "--input", str(tmp_path / "in.txt")],
        "generate": ["generate", "hello"],
        "inspect": ["inspect", prompt],
        "serve": ["serve", "--prompts", str(tmp_path / "prompts")],
        "compare": ["compare", "--methods", "zero-shot", "--out", str(tmp_path / "c")],
        "studio": ["studio", "--data-dir", str(tmp_path / "s")],
    }


@pytest.fixture
def loader_calls(monkeypatch):
    """Every load_base_model call's `quantize`; the call then stops the command with a user error."""
    for name in ("softprompt.compare.run", "softprompt.compare.seeds"):  # bound at import: import before patching
        importlib.import_module(name)
    calls: list[object] = []
    real = models.load_base_model

    def fake(name=None, **kwargs):
        calls.append(kwargs.get("quantize", "(not passed)"))
        raise SoftPromptError("stopped where the model loads")

    patched = [
        n
        for n, m in list(sys.modules.items())
        if n.startswith("softprompt") and getattr(m, "load_base_model", 0) is real
    ]
    for name in patched:
        monkeypatch.setattr(sys.modules[name], "load_base_model", fake)
    yield calls
    late = [n for n, m in list(sys.modules.items()) if getattr(m, "load_base_model", None) is fake and n not in patched]
    assert not late, f"imported while the loader was patched, these would keep the fake: {late}"


@pytest.mark.parametrize("command", [c for c in COMMANDS if c not in READS_FILES_ONLY])
@pytest.mark.parametrize("asked", [None, "int8", "int4", "INT4/64"])
def test_every_command_that_loads_a_model_passes_quantize_to_the_loader(
    command, asked, loader_calls, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    argv = _argv(tmp_path)[command]  # a new command that loads a model needs a line here, and --quantize
    assert main(argv + ([] if asked is None else ["--quantize", asked])) == EXIT_USAGE
    assert "stopped where the model loads" in capsys.readouterr().err
    assert loader_calls == [(asked or DEFAULT_QUANTIZE).lower()]


def test_one_definition_one_default_and_the_modes_of_the_quant_package():
    from softprompt.quant import QUANT_MODES

    assert tuple(QUANT_MODES) == QUANTIZE_MODES and DEFAULT_QUANTIZE == "none"
    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name in COMMANDS:
        flag = next((a for a in subs[name]._actions if "--quantize" in a.option_strings), None)
        if name in READS_FILES_ONLY:
            assert flag is None, name
            continue
        assert flag is not None, name
        assert flag.metavar == "{none,int8,int4}" and flag.default is None, name
        assert f"(default: {DEFAULT_QUANTIZE})" in flag.help, name


def test_an_unknown_mode_or_group_size_is_a_usage_error_before_the_model_loads(capsys, forbid_model_load):
    forbid_model_load("before --quantize is checked")
    with pytest.raises(SystemExit) as stop:
        main(["generate", "hi", "--quantize", "int3"])
    assert stop.value.code == EXIT_USAGE
    assert "--quantize: choose from none, int8, int4" in capsys.readouterr().err
    assert main(["generate", "hi", "--quantize", "int4/7"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--quantize" in err and "32, 64, 128" in err
