"""A prompt records the precision of the base model it was trained on; it loads at another precision of the
same model with one notice line (the fingerprint ignores precision), and `info`/`inspect` show it."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import replace

import pytest

from softprompt.cli import main
from softprompt.errors import PromptFileError
from softprompt.models import load_base_model, quantize_base
from softprompt.prompts.meta import PromptMeta, trained_precision
from softprompt.prompts.methods import load_prompt
from softprompt.prompts.plain import SoftPrompt
from softprompt.prompts.prefix import PrefixPrompt
from softprompt.testing import save_tiny, tiny_base

NOTICE = "notice: trained on int8 weights, running on full-precision weights"


def notices(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "notice: trained on" in r.getMessage()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model folder, and a prompt trained on it through the CLI with --quantize int8."""
    root = tmp_path_factory.mktemp("qprompt")
    model = str(save_tiny("llama", root / "model"))
    rows = [{"text": f"text {i}", "label": "ab"[i % 2]} for i in range(24)]
    (root / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = ["train", "--model", model, "--data", str(root / "d.jsonl"), "--quantize", "int8", "--steps", "2"]
    argv += ["--num-virtual-tokens", "2", "--max-dev-examples", "0", "--quiet", "--out", str(root / "p")]
    assert main(argv) == 0
    return root, model


def test_a_prompt_trained_on_int8_records_it_and_info_shows_it(trained, capsys):
    root, model = trained
    capsys.readouterr()
    assert main(["info", str(root / "p"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["base_quantization"]["mode"] == "int8" and info["trained_precision"] == "int8"
    assert info["base_fingerprint"] == load_base_model(model).fingerprint  # the unquantised model's
    assert main(["info", str(root / "p")]) == 0
    assert re.search(r"\ntrained on weights +int8\n", capsys.readouterr().out)


def test_it_loads_on_the_fp32_model_with_exactly_one_notice(trained, capsys, caplog):
    root, model = trained
    caplog.set_level(logging.WARNING, logger="softprompt")
    argv = ["eval", "--model", model, "--prompt", str(root / "p"), "--data", str(root / "d.jsonl"), "--json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 24
    assert len(notices(caplog)) == 1 and NOTICE in notices(caplog)[0] and str(root / "p") in notices(caplog)[0]
    caplog.clear()
    assert main([*argv, "--quantize", "int8"]) == 0  # the precision it was trained on: no notice
    assert notices(caplog) == []


def test_generate_and_inspect_say_it_once_too(trained, capsys, caplog):
    root, model = trained
    caplog.set_level(logging.WARNING, logger="softprompt")
    assert main(["generate", "--model", model, "--prompt", str(root / "p"), "hi", "--max-new-tokens", "2"]) == 0
    assert len(notices(caplog)) == 1
    caplog.clear()
    capsys.readouterr()
    assert main(["inspect", str(root / "p"), "--model", model, "--json"]) == 0
    assert len(notices(caplog)) == 1
    shown = json.loads(capsys.readouterr().out)
    assert shown["precision"] == {"trained_on": "int8", "inspected_on": "full-precision"}
    caplog.clear()
    assert main(["inspect", str(root / "p"), "--model", model, "--quantize", "int8"]) == 0  # nearest tokens on int8
    assert notices(caplog) == [] and "weights: trained on int8, inspected on int8" in capsys.readouterr().out


def test_deep_prompt_across_precisions_one_notice_and_fingerprint_unchanged(tmp_path, caplog):
    fp32, q4 = tiny_base("llama"), quantize_base(tiny_base("llama"), "int4")
    assert q4.fingerprint == fp32.fingerprint
    PrefixPrompt.initialize(q4, 2, "random", meta=PromptMeta(task="generate")).save(tmp_path / "deep", q4)
    caplog.set_level(logging.WARNING, logger="softprompt")
    prompt = load_prompt(tmp_path / "deep", fp32)
    assert trained_precision(prompt.meta).startswith("int4")

    prompt.inspect(fp32)  # the deep prompt's own check stays quiet
    assert len(notices(caplog)) == 1 and "trained on int4" in notices(caplog)[0]


def test_old_and_peft_prompts(tmp_path, caplog):
    base8 = quantize_base(tiny_base("llama"), "int8")
    caplog.set_level(logging.WARNING, logger="softprompt")
    old = SoftPrompt.initialize(tiny_base("llama"), 2, "random")
    old = old.with_weights(old.embeddings, replace(old.meta, base_quantization=None))  # saved before quantisation
    assert trained_precision(old.meta) == "full-precision"
    old.check_compatible(base8, where="old")
    assert len(notices(caplog)) == 1 and "running on int8 weights" in notices(caplog)[0]
    caplog.clear()
    peft = old.with_weights(old.embeddings, PromptMeta())  # a PEFT file: nothing recorded
    assert trained_precision(peft.meta) is None
    peft.check_compatible(base8, where="peft")
    assert notices(caplog) == []


def test_a_wrong_recorded_quantisation_is_refused_as_a_corrupt_file():
    with pytest.raises(PromptFileError, match="base_quantization"):
        PromptMeta.from_json(json.dumps({"base_quantization": "int8"}), where="x")
    assert PromptMeta.from_json(json.dumps({"base_quantization": {"mode": "int8"}}), where="x").base_quantization
