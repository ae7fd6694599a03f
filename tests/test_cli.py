"""The command line's contract: --help without torch, one line per failure, the exit codes, missing extras."""

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

    def no_model(*args, **kwargs):
        raise AssertionError("the model must not load when a package is missing")

    monkeypatch.setattr("softprompt.models.load_base_model", no_model)


@pytest.mark.parametrize(
    "argv,missing,extra",
    [
        (["serve", "--prompts", "p"], "fastapi", "serve"),
        (["studio", "--data-dir", "d"], "uvicorn", "studio"),
        (["compare", "--methods", "lora"], "peft", "compare"),
        (["inspect", "p", "--plot", "x.png"], "matplotlib", "plots"),
    ],
)
def test_a_missing_extra_is_named_before_the_model_loads(monkeypatch, capsys, tmp_path, argv, missing, extra):
    monkeypatch.chdir(tmp_path)
    _without(monkeypatch, missing)
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
    from softprompt.prompt import PromptMeta, SoftPrompt
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


def test_outputs_are_checked_before_the_model_loads(monkeypatch, tmp_path, capsys):
    """Every command that writes refuses an unwritable output first: no model load, no training step."""

    def no_model(*args, **kwargs):
        raise AssertionError("the model must not load before the output is checked")

    monkeypatch.setattr("softprompt.models.load_base_model", no_model)
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
