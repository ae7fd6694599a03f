"""The command line's contract: --help without torch, one line per failure, the exit codes, missing extras."""

import argparse
import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from softprompt import extras
from softprompt.cli import COMMANDS, main
from softprompt.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_SOME_FAILED, EXIT_USAGE, SoftPromptError

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "safetensors", "numpy", "fastapi", "uvicorn", "peft", "matplotlib", "pyarrow")


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        cwd=ROOT,
    )


def test_every_help_builds_without_torch_or_any_heavy_package():
    """`softprompt --help` and each `softprompt X --help` with torch & co. made unimportable."""
    done = run_python(
        f"""
        import sys
        class Refuse:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {HEAVY!r}:
                    raise ImportError("refused for the test: " + name)
        sys.meta_path.insert(0, Refuse())
        from softprompt.cli import COMMANDS, build_parser, main
        build_parser()
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
        assert not loaded, loaded
        for argv in [["--help"], *[[name, "--help"] for name in COMMANDS]]:
            try:
                main(argv)
            except SystemExit as e:
                assert e.code == 0, (argv, e.code)
        print("ok")
        """
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.rstrip().endswith("ok")
    assert "exit codes:" in done.stdout and "softprompt train" in done.stdout


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_help_says_what_it_does_and_the_exit_codes(name, capsys):
    with pytest.raises(SystemExit) as stop:
        main([name, "--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert f"softprompt {name}" in text  # the module's docstring: what it does, how it is called
    assert "exit codes:" in text


def _failing(monkeypatch, error: BaseException):
    def run(args):
        raise error

    monkeypatch.setattr("softprompt.commands.info.run", run)


def test_user_errors_are_one_line_with_exit_2(monkeypatch, capsys):
    _failing(monkeypatch, SoftPromptError("data.csv:3: empty 'text'"))
    assert main(["info", "x"]) == EXIT_USAGE
    assert capsys.readouterr().err == "softprompt info: error: data.csv:3: empty 'text'\n"


@pytest.mark.parametrize(
    "code,name,words",
    [
        (errno.EACCES, "Permission denied", "permissions"),
        (errno.EROFS, "Read-only file system", "read-only"),
        (errno.ENOSPC, "No space left on device", "free some space"),
        (errno.EISDIR, "Is a directory", "folder"),
    ],
)
def test_os_errors_name_the_file_and_what_to_do(monkeypatch, capsys, code, name, words):
    _failing(monkeypatch, OSError(code, name, "out/prompt/adapter_model.safetensors"))
    assert main(["info", "x"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"softprompt info: error: out/prompt/adapter_model.safetensors: {name}; ")
    assert words in err


def test_a_bug_shows_its_traceback_and_says_internal_error(monkeypatch, capsys):
    _failing(monkeypatch, ZeroDivisionError("division by zero"))
    assert main(["info", "x"]) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError" in err
    assert "softprompt info: internal error: ZeroDivisionError: division by zero" in err
    assert "bug in softprompt: please report it" in err


def test_interrupt_exits_130(monkeypatch, capsys):
    _failing(monkeypatch, KeyboardInterrupt())
    assert main(["info", "x"]) == EXIT_INTERRUPTED
    assert capsys.readouterr().err == "softprompt info: interrupted\n"


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--no-such-flag"])
    assert stop.value.code == EXIT_USAGE


def test_the_script_exits_with_mains_code(tmp_path):
    """`python -m softprompt` (the console script's entry) exits with main's code."""
    done = subprocess.run(
        [sys.executable, "-m", "softprompt", "info", str(tmp_path / "nothing")], capture_output=True, text=True
    )
    assert done.returncode == EXIT_USAGE and "does not exist" in done.stderr


# -- optional dependencies -------------------------------------------------------------------


def test_extras_match_pyproject():
    tomllib = pytest.importorskip("tomllib")
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]

    def names(specs):
        return {s.split(">")[0].split("=")[0].split("<")[0].split("[")[0].strip().lower() for s in specs}

    for extra, packages in extras.EXTRAS.items():
        assert names(declared[extra]) == set(packages.values()), extra
    assert names(declared["all"]) == {p for packages in extras.EXTRAS.values() for p in packages.values()}


def _without(monkeypatch, *modules: str):
    real = extras.importlib.util.find_spec
    monkeypatch.setattr(
        extras.importlib.util, "find_spec", lambda name, *a: None if name in modules else real(name, *a)
    )


@pytest.mark.parametrize(
    "argv,missing,extra",
    [
        (["serve", "--prompts", "p"], "fastapi", "serve"),
        (["studio", "--data-dir", "d"], "uvicorn", "studio"),
        (["compare", "--methods", "lora"], "peft", "compare"),
        (["inspect", "p", "--plot", "x.png"], "matplotlib", "plots"),
    ],
)
def test_a_missing_extra_is_named_before_the_model_loads(
    monkeypatch, forbid_model_load, capsys, tmp_path, argv, missing, extra
):
    monkeypatch.chdir(tmp_path)
    _without(monkeypatch, missing)
    forbid_model_load("when a package is missing")
    assert main(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and missing in err and f"pip install 'softprompt[{extra}]'" in err


def test_compare_without_lora_does_not_need_peft(monkeypatch):
    _without(monkeypatch, "peft")
    extras.require("compare", "compare", modules=("matplotlib",))
    with pytest.raises(SoftPromptError, match=r"softprompt\[compare\]"):
        extras.require("compare", "compare --methods lora")


def test_predict_exit_code_counts_failed_inputs(tmp_path, capsys):
    """0 when every input is answered, 1 when some fail (each with its error line), 2 for a bad --prompt."""
    from softprompt.prompts.meta import PromptMeta
    from softprompt.prompts.plain import SoftPrompt
    from softprompt.testing import save_tiny

    model = str(save_tiny("llama", tmp_path / "model"))
    from softprompt.models import load_base_model

    base = load_base_model(model)
    meta = PromptMeta(task="classify", template="R: {text}\nS:", verbalizer={"a": " x", "b": " y"})
    SoftPrompt.initialize(base, 3, "random", meta=meta).save(tmp_path / "p", base)
    good, mixed = tmp_path / "good.txt", tmp_path / "mixed.jsonl"
    good.write_text("fine\nalso fine\n")
    mixed.write_text(json.dumps({"text": "fine"}) + "\n" + json.dumps({"text": ""}) + "\n")
    common = ["predict", "--model", model, "--prompt", str(tmp_path / "p")]
    assert main([*common, "--input", str(good)]) == 0
    assert main([*common, "--input", str(mixed)]) == EXIT_SOME_FAILED
    assert "2 inputs, 1 failed" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    assert main(["predict", "--model", model, "--prompt", str(broken), "--input", str(good)]) == EXIT_USAGE


def test_outputs_are_checked_before_the_model_loads(monkeypatch, forbid_model_load, tmp_path, capsys):
    """Every command that writes refuses an unwritable output first: no model load, no training step."""
    forbid_model_load("before the output is checked")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "d.jsonl").write_text(
        json.dumps({"text": "good", "label": "a"}) + "\n" + json.dumps({"text": "bad", "label": "b"}) + "\n"
    )
    (tmp_path / "in.txt").write_text("hello\n")
    cases = [
        (["train", "--data", "d.jsonl", "--out", "a-file"], "--out a-file: is a file"),
        (["quickstart", "--out", "a-file"], "--out a-file: is a file"),
        (
            ["compare", "--data", "d.jsonl", "--template", "{text}", "--labels", "a,b", "--out", "a-file/x"],
            "a-file is a file",
        ),
        (["studio", "--data-dir", "a-file"], "--data-dir a-file: is a file"),
        (["predict", "--prompt", "p", "--input", "in.txt", "--output", "a-folder"], "--output a-folder: is a folder"),
        (["inspect", "p", "--plot", "a-folder"], "--plot a-folder: is a folder"),
    ]
    for argv, words in cases:
        assert main(argv) == EXIT_USAGE, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err, (argv, err)


def test_a_read_only_place_is_refused_with_the_flag_and_what_to_do(monkeypatch, tmp_path, capsys):
    from softprompt import fileio

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp_path / ".softprompt-probe-x"))

    monkeypatch.setattr(fileio.tempfile, "mkstemp", read_only)
    monkeypatch.chdir(tmp_path)
    assert main(["quickstart", "--out", "q"]) == EXIT_USAGE
    assert "--out q: cannot write in .: " in capsys.readouterr().err


# -- one name per concept, --device everywhere, an example in every --help -------------------------------

MODEL_COMMANDS = ("quickstart", "train", "eval", "predict", "generate", "inspect", "serve", "compare", "studio")


def subparsers():
    from softprompt.cli import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def option(sub, flag: str):
    return next((a for a in sub._actions if flag in a.option_strings), None)


def test_every_command_that_loads_a_model_takes_device_with_one_default():
    subs = subparsers()
    for name in MODEL_COMMANDS:
        device = option(subs[name], "--device")
        assert device is not None and device.default is None, name
        assert "(default: cpu)" in device.help, name
    assert option(subs["info"], "--device") is None  # info reads files only


@pytest.mark.parametrize("name", COMMANDS)
def test_each_help_shows_an_example_and_every_default(name, capsys):
    with pytest.raises(SystemExit):
        main([name, "--help"])
    text = capsys.readouterr().out
    assert f"\n    softprompt {name}" in text  # an example line, indented as in the module's docstring
    from softprompt.cli import _HelpFormatter

    formatter = _HelpFormatter(f"softprompt {name}")
    for action in subparsers()[name]._actions:
        shown = action.default not in (None, False, [], argparse.SUPPRESS) and action.help != argparse.SUPPRESS
        if shown and action.option_strings:
            assert "default" in formatter._get_help_string(action), (name, action.option_strings)


def test_former_flag_spellings_still_work_but_are_not_shown(capsys):
    from softprompt.cli import build_parser

    parser = build_parser()
    serve = parser.parse_args(["serve", "--prompts", "p", "--max-batch-size", "4", "--max-tokens", "7"])
    assert (serve.batch_size, serve.max_new_tokens) == (4, 7)
    assert parser.parse_args(["serve", "--prompts", "p"]).batch_size == 32  # the default, when neither is given
    compare = parser.parse_args(["compare", "--prompt-optimizer", "adafactor", "--prompt-lr", "0.3"])
    assert (compare.optimizer, compare.lr) == ("adafactor", 0.3)
    for name in ("serve", "compare"):
        with pytest.raises(SystemExit):
            main([name, "--help"])
        text = capsys.readouterr().out
        for old in ("--max-batch-size", "--max-tokens", "--prompt-optimizer", "--prompt-lr"):
            assert old not in text, (name, old)


def test_one_name_per_concept_across_commands():
    """The same concept has the same flag wherever it appears (the names issue 15 found split)."""
    subs = subparsers()
    visible = {
        name: {s for a in sub._actions if a.help != argparse.SUPPRESS for s in a.option_strings}
        for name, sub in subs.items()
    }
    assert all(
        "--batch-size" in visible[n] for n in ("eval", "predict", "generate", "serve", "inspect", "train", "compare")
    )
    assert all("--max-new-tokens" in visible[n] for n in ("predict", "generate", "serve"))
    assert "--optimizer" in visible["train"] and "--optimizer" in visible["compare"]
    assert not any({"--max-tokens", "--prompt-optimizer", "--prompt-lr"} & flags for flags in visible.values())
    assert "--max-batch-size" not in visible["serve"]


def test_device_auto_and_train_under_a_launcher(monkeypatch):
    import torch

    from softprompt.commands.options import device

    assert device(argparse.Namespace(device=None)) == "cpu"
    assert device(argparse.Namespace(device="cuda:1")) == "cuda:1"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device(argparse.Namespace(device="auto")) == "cuda"


def test_compare_words_its_settings_as_its_flags(capsys):
    assert main(["compare", "--lr", "-1"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--lr" in err and "prompt_lr" not in err and "--prompt-lr" not in err
