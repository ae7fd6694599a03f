"""`softprompt predict` and `softprompt generate` on a tiny model saved to a folder."""

import io
import json

import pytest

from softprompt.cli import main
from softprompt.infer import GenerationConfig, Predictor
from softprompt.models import load_base_model
from softprompt.prompts.meta import PromptMeta
from softprompt.prompts.plain import SoftPrompt
from softprompt.testing import save_tiny, tiny_base

SENTIMENT = PromptMeta(task="classify", template="Review: {text}\nSentiment:", verbalizer={"pos": "+", "neg": "-"})
ANSWER = PromptMeta(task="generate", template="Q: {text}\nA:")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    model = str(save_tiny("llama", root / "model"))
    base = load_base_model(model)
    folders = {}
    for i, (name, meta) in enumerate((("cls", SENTIMENT), ("cls2", SENTIMENT), ("gen", ANSWER))):
        prompt = SoftPrompt.initialize(base, 4 + i, "random", seed=i, meta=PromptMeta(**meta.__dict__))
        folders[name] = str(prompt.save(root / name, base))
    foreign = SoftPrompt.initialize(tiny_base("llama", seed=1), 4, "random", meta=PromptMeta(**SENTIMENT.__dict__))
    folders["foreign"] = str(foreign.save(root / "foreign"))
    return root, model, base, folders


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_jsonl_with_mixed_prompts_and_bad_rows(setup, capsys):
    root, model, base, f = setup
    rows = [
        {"text": "a great film"},
        {"text": ""},
        {"text": "so bad", "prompt": f["gen"]},
        {"text": "meh", "prompt": str(root / "missing")},
        {"text": "fine", "prompt": f["foreign"]},
        {"text": "word " * 60},
    ]
    data = root / "in.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, err = run_cli(capsys, "predict", "--model", model, "--prompt", f["cls"], "--input", str(data))
    assert code == 1  # some inputs failed; the others are answered
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["input"] for line in lines] == [1, 2, 3, 4, 5, 6]
    assert lines[0]["label"] in ("pos", "neg") and sum(lines[0]["probs"].values()) == pytest.approx(1, abs=1e-4)
    assert "empty text" in lines[1]["error"] and "in.jsonl:2" in lines[1]["error"]
    assert isinstance(lines[2]["generated"], str) and lines[2]["prompt"] == f["gen"]
    assert "does not exist" in lines[3]["error"]
    assert "trained on" in lines[4]["error"]
    assert "too long" in lines[5]["error"]
    # The same answer as the Python API.
    predictor = Predictor(base)
    predictor.add_prompt("c", SoftPrompt.load(f["cls"], base))
    assert lines[0]["label"] == predictor.classify([("c", "a great film")])[0].label
    assert "6 inputs, 4 failed" in err


def test_predict_plain_stdin_every_prompt_and_ensemble(setup, capsys, monkeypatch, tmp_path):
    _, model, _, f = setup
    monkeypatch.setattr("sys.stdin", io.StringIO("good movie\n\nawful movie\n"))
    code, out, _ = run_cli(
        capsys, "predict", "--model", model, "--prompt", f["cls"], "--prompt", f["gen"], "--input", "-"
    )
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(lines) == 4  # 2 inputs x 2 prompts (the blank line is skipped)
    assert "label" in lines[0] and "generated" in lines[1]

    texts = tmp_path / "texts.txt"
    texts.write_text("good movie\nawful movie\n")
    out_file = tmp_path / "out.jsonl"
    argv = ["predict", "--model", model, "--prompt", f["cls"], "--prompt", f["cls2"], "--input", str(texts)]
    code, _, _ = run_cli(capsys, *argv, "--ensemble", "mean", "--output", str(out_file))
    lines = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert code == 0 and len(lines) == 2 and lines[0]["prompt"] == [f["cls"], f["cls2"]]
    assert set(lines[0]["probs"]) == {"pos", "neg"}


def test_predict_refuses_an_ensemble_of_a_generation_prompt(setup, capsys, tmp_path):
    _, model, _, f = setup
    texts = tmp_path / "t.txt"
    texts.write_text("x\n")
    code, _, err = run_cli(
        capsys,
        "predict",
        "--model",
        model,
        "--prompt",
        f["cls"],
        "--prompt",
        f["gen"],
        "--input",
        str(texts),
        "--ensemble",
        "vote",
    )
    assert code == 2 and "not a classification prompt" in err


def test_generate_greedy_stream_stop_and_json(setup, capsys):
    _, model, base, f = setup
    predictor = Predictor(base)
    predictor.add_prompt("g", SoftPrompt.load(f["gen"], base))
    want = predictor.generate([("g", "hello")], GenerationConfig(max_new_tokens=6))[0]

    code, out, _ = run_cli(capsys, "generate", "--model", model, "--prompt", f["gen"], "hello", "--max-new-tokens", "6")
    assert code == 0 and out == want + "\n"
    code, out, _ = run_cli(
        capsys, "generate", "--model", model, "--prompt", f["gen"], "hello", "--max-new-tokens", "6", "--stream"
    )
    assert code == 0 and out == want + "\n"
    if len(want) > 2:  # a stop string cuts before it
        stop = want[2:4]
        code, out, _ = run_cli(
            capsys, "generate", "--model", model, "--prompt", f["gen"], "hello", "--max-new-tokens", "6", "--stop", stop
        )
        assert out == want[: want.index(stop)] + "\n"
    code, out, err = run_cli(
        capsys,
        "generate",
        "--model",
        model,
        "hi",
        "",
        "--json",
        "--temperature",
        "0.8",
        "--seed",
        "1",
        "--top-p",
        "0.9",
    )
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 1 and "generated" in lines[0] and lines[0]["prompt"] is None
    assert "empty text" in lines[1]["error"] and "empty text" in err


def test_generate_refuses_bad_flags(setup, capsys):
    _, model, _, _ = setup
    code, _, err = run_cli(capsys, "generate", "--model", model, "hi", "--top-p", "0")
    assert code == 2 and "top_p" in err


def test_sampling_from_the_cli_is_reproducible(setup, capsys):
    _, model, _, f = setup
    argv = ["generate", "--model", model, "--prompt", f["gen"], "hi", "--temperature", "1", "--seed", "3", "--json"]
    first = run_cli(capsys, *argv)[1]
    assert first == run_cli(capsys, *argv)[1]


def test_predict_and_generate_with_a_t5_prompt(tmp_path, capsys):
    """Encoder-decoder prompts classify and generate through the CLI, as the Python API does."""
    model = str(save_tiny("t5", tmp_path / "t5"))
    base = load_base_model(model)
    meta = PromptMeta(task="classify", template="Review: {text}", verbalizer={"pos": "+", "neg": "-"})
    cls = str(SoftPrompt.initialize(base, 4, "random", seed=1, meta=meta).save(tmp_path / "cls", base))
    gen = str(
        SoftPrompt.initialize(base, 3, "random", seed=2, meta=PromptMeta(**ANSWER.__dict__)).save(
            tmp_path / "gen", base
        )
    )
    texts = tmp_path / "in.txt"
    texts.write_text("a great film\nso bad\n")
    code, out, _ = run_cli(capsys, "predict", "--model", model, "--prompt", cls, "--prompt", gen, "--input", str(texts))
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(lines) == 4
    predictor = Predictor(base)
    predictor.add_prompt("c", SoftPrompt.load(cls, base))
    predictor.add_prompt("g", SoftPrompt.load(gen, base))
    want = predictor.classify([("c", "a great film")])[0]
    assert lines[0]["label"] == want.label
    assert lines[0]["probs"] == pytest.approx(want.probs, abs=1e-5)
    config = GenerationConfig(max_new_tokens=5)
    assert lines[1]["generated"] == predictor.generate([("g", "a great film")], config)[0]
    code, out, _ = run_cli(
        capsys, "generate", "--model", model, "--prompt", gen, "--max-new-tokens", "5", "--json", "so bad"
    )
    assert code == 0 and json.loads(out)["generated"] == predictor.generate([("g", "so bad")], config)[0]


def test_a_bad_prompt_flag_stops_before_the_model_loads(setup, capsys, forbid_model_load, tmp_path):
    """A --prompt folder is the user's choice: one that does not load is exit 2, and costs no model load."""
    root, model, _, f = setup
    texts = tmp_path / "t.txt"
    texts.write_text("x\n")
    code, _, err = run_cli(capsys, "generate", "--model", model, "--prompt", f["foreign"], "hi")
    assert code == 2 and err.splitlines()[-1].startswith("softprompt generate: error: ") and "trained on" in err

    forbid_model_load("for a missing prompt folder")
    for argv in (["generate", "hi"], ["predict", "--input", str(texts)]):
        code, _, err = run_cli(capsys, *argv, "--model", model, "--prompt", f["cls"], "--prompt", str(root / "nope"))
        assert code == 2 and "does not exist" in err
