"""Chat prompts through every command: train, eval, predict and generate on conversations, a tiny model folder."""

from __future__ import annotations

import json

import pytest

from softprompt.cli import main
from softprompt.infer import GenerationConfig, Predictor
from softprompt.models import load_base_model
from softprompt.prompts.methods import load_prompt
from softprompt.testing import CHAT_TEMPLATES, tiny_model

SYSTEM = {"role": "system", "content": "Say the colour."}
ANSWERS = ("red", "blue")


def conversation(i: int) -> list[dict]:
    return [SYSTEM, {"role": "user", "content": f"thing {i}"}, {"role": "assistant", "content": ANSWERS[i % 2]}]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("chat")
    model, tokenizer = tiny_model("llama")
    tokenizer.chat_template = CHAT_TEMPLATES["qwen2"]
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    data = root / "chat.jsonl"
    rows = [{"messages": conversation(i)} for i in range(20)]
    rows[3]["messages"] = [
        *conversation(3)[:2],
        {"role": "assistant", "content": "x", "weight": 0},
        *conversation(3)[1:],
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root, str(root / "model"), data


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("kind", ["chat", "chat_classify"])
def test_train_eval_predict_generate_on_conversations(setup, capsys, kind):
    root, model, data = setup
    out = root / f"prompt-{kind}"
    args = ["train", "--model", model, "--data", str(data), "--task", kind, "--steps", "2", "--batch-size", "4"]
    code, stdout, stderr = run(capsys, *args, "--num-virtual-tokens", "3", "--out", str(out))
    assert code == 0, stderr
    assert "the prompt sits after the system message every training row shares" in stderr
    meta = load_prompt(out).meta
    assert (meta.task, meta.format, meta.system, meta.placement) == (kind, "chat", SYSTEM["content"], "after_system")
    if kind == "chat_classify":
        assert meta.verbalizer == {"blue": " blue", "red": " red"}  # scored without the space (tasks/chat.py)

    code, stdout, _ = run(capsys, "info", str(out), "--json")
    assert code == 0 and json.loads(stdout)["placement"] == "after_system"
    code, stdout, _ = run(capsys, "eval", "--model", model, "--prompt", str(out), "--data", str(data), "--json")
    report = json.loads(stdout)
    metric = "exact_match" if kind == "chat" else "accuracy"
    assert code == 0 and report["n"] == 20 and 0 <= report[metric] <= 1 and report["loss"] > 0
    if kind == "chat":
        assert "token_f1" in report
        # The bare model on the same data: the whole rendering, system turn included (no prefix to hold it).
        code, stdout, _ = run(capsys, "eval", "--model", model, "--data", str(data), "--task", kind, "--json")
        assert code == 0 and json.loads(stdout)["n"] == 20

    # predict reads `messages` rows (a final assistant turn is what it predicts); generate takes them as JSON.
    inputs = root / f"in-{kind}.jsonl"
    inputs.write_text(
        json.dumps({"messages": conversation(0)}) + "\n" + json.dumps({"messages": conversation(1)[1:2]}) + "\n"
    )
    code, stdout, _ = run(
        capsys, "predict", "--model", model, "--prompt", str(out), "--input", str(inputs), "--max-new-tokens", "4"
    )
    lines = [json.loads(line) for line in stdout.splitlines()]
    assert code == 0 and len(lines) == 2
    base = load_base_model(model)
    predictor = Predictor(base)
    predictor.add_prompt("p", load_prompt(out, base))
    if kind == "chat_classify":
        assert lines[0]["label"] == predictor.classify([("p", json.dumps(conversation(0)[:2]))])[0].label
        return
    config = GenerationConfig(max_new_tokens=4)
    # The second row has no system message: the one the training rows shared goes first, as in training.
    same = predictor.generate([("p", json.dumps(conversation(1)[:2]))], config)[0]
    assert lines[1]["generated"] == same
    code, stdout, _ = run(
        capsys,
        "generate",
        "--model",
        model,
        "--prompt",
        str(out),
        json.dumps(conversation(1)[:2]),
        "--max-new-tokens",
        "4",
    )
    assert code == 0 and stdout.rstrip("\n") == same


def test_a_model_without_chat_template_is_one_clear_error(setup, tmp_path, capsys):
    from softprompt.testing import save_tiny

    root, _, data = setup
    plain = save_tiny("llama", tmp_path / "plain")
    code, _, err = run(capsys, "train", "--model", str(plain), "--data", str(data), "--task", "chat", "--steps", "1", "--out", str(tmp_path / "o"), "--quiet")  # fmt: skip
    assert code == 2 and "has no chat template" in err and "Traceback" not in err
