"""`softprompt info`, and the CLI's error contract (one line, no traceback)."""

import json

from softprompt.cli import main
from softprompt.prompts.meta import PromptMeta
from softprompt.prompts.plain import SoftPrompt


def test_info_plain_and_json(tmp_path, tiny_models, capsys):
    base = tiny_models("llama")
    meta = PromptMeta(task="classify", template="R: {text}\nS:", verbalizer={"pos": " good", "neg": " bad"})
    SoftPrompt.initialize(base, 7, "vocab", meta=meta).save(tmp_path / "p", base)
    assert main(["info", str(tmp_path / "p")]) == 0
    text = capsys.readouterr().out
    assert "virtual tokens (T)  7" in text
    assert "tiny-llama" in text and "classify" in text and "pos -> ' good'" in text

    assert main(["info", str(tmp_path / "p"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["num_virtual_tokens"] == 7 and info["dim"] == 32 and info["parameters"] == 7 * 32
    assert info["init"] == "vocab" and info["labels"] == ["pos", "neg"]
    size = sum(p.stat().st_size for p in (tmp_path / "p").iterdir())
    assert info["bytes_on_disk"] == size


def test_cli_reports_user_errors_without_traceback(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("softprompt info: error: prompt folder")
    assert "Traceback" not in err


def test_info_tells_a_deep_prompt(tmp_path, tiny_models, capsys):
    from softprompt.prompts.prefix import PrefixPrompt

    base = tiny_models("qwen2")
    PrefixPrompt.initialize(base, 3, "vocab").save(tmp_path / "p", base)
    assert main(["info", str(tmp_path / "p"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["method"] == "prefix" and info["peft_type"] == "PREFIX_TUNING"
    assert info["layout"] == {"layers": 2, "kv_heads": 2, "head_dim": 8}
    assert info["num_virtual_tokens"] == 3 and info["dim"] == 2 * 2 * 2 * 8 and info["parameters"] == 3 * 64
    assert main(["info", str(tmp_path / "p")]) == 0
    assert "prefix (PREFIX_TUNING)" in capsys.readouterr().out
