"""`softprompt train` and `softprompt eval` end to end on a tiny model saved to a folder."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from softprompt.cli import main
from softprompt.prompts.methods import load_prompt
from softprompt.prompts.prefix import PrefixPrompt
from softprompt.testing import save_tiny


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return str(save_tiny("llama", tmp_path_factory.mktemp("tiny") / "llama"))


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "reviews.jsonl"
    rows = [
        {"text": ("good " if i % 2 else "bad ") * (1 + i % 3), "label": "pos" if i % 2 else "neg"} for i in range(40)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def train_args(model_dir, data_file, out, *extra):
    return [
        "train", "--model", model_dir, "--data", str(data_file), "--labels", "pos=yes,neg=no",
        "--num-virtual-tokens", "3", "--batch-size", "8", "--eval-every", "2", "--out", str(out), "--quiet", *extra,
    ]  # fmt: skip


def test_train_then_eval(model_dir, data_file, tmp_path, capsys):
    out = tmp_path / "prompt"
    assert main(train_args(model_dir, data_file, out, "--steps", "4", "--template", "R: {text}\nS:")) == 0
    assert "finished: 4 steps" in capsys.readouterr().out
    prompt = load_prompt(out)
    assert prompt.num_virtual_tokens == 3 and prompt.meta.task == "classify"
    assert prompt.meta.template == "R: {text}\nS:" and prompt.meta.verbalizer == {"pos": " yes", "neg": " no"}
    assert prompt.meta.training["steps"] == 4 and (out / "metrics.jsonl").is_file()

    assert main(["eval", "--model", model_dir, "--prompt", str(out), "--data", str(data_file), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 40 and 0 <= report["accuracy"] <= 1 and "macro_f1" in report and report["loss"] > 0
    assert main(["eval", "--model", model_dir, "--prompt", str(out), "--data", str(data_file)]) == 0
    text = capsys.readouterr().out
    assert "accuracy" in text and f"loss         {report['loss']:.4f}  (mean cross-entropy" in text
    recall = ", ".join(f"{k} {v['recall']:.2f}" for k, v in report["per_label"].items())
    assert f"recall       {recall}" in text and " pos " in text  # each class's recall: a starved one shows 0.00
    # The decision rule applied is said: the prompt's stored bias (balanced labels here: none, the argmax).
    assert report.get("decision_bias") == prompt.meta.training.get("decision_bias")
    assert "decision     " in text


def test_train_a_deep_prompt_then_eval_predict_generate_and_inspect_it(model_dir, data_file, tmp_path, capsys):
    out = tmp_path / "deep"
    assert (
        main(train_args(model_dir, data_file, out, "--steps", "3", "--method", "prefix", "--reparam", "residual")) == 0
    )
    said = capsys.readouterr().out
    assert "prefix 3x2x2x2x8" in said and "PREFIX_TUNING" in said
    prompt = load_prompt(out)
    assert isinstance(prompt, PrefixPrompt) and prompt.meta.training["reparam"] == "residual"
    assert main(["eval", "--model", model_dir, "--prompt", str(out), "--data", str(data_file), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 40
    inputs = tmp_path / "in.jsonl"
    inputs.write_text(json.dumps({"text": "good good"}) + "\n")
    assert main(["predict", "--model", model_dir, "--prompt", str(out), "--input", str(inputs)]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["label"] in ("pos", "neg")
    assert main(["generate", "--model", model_dir, "--prompt", str(out), "--max-new-tokens", "3", "hi"]) == 0
    capsys.readouterr()
    plot = tmp_path / "layers.png"
    assert main(["inspect", str(out), "--model", model_dir, "--json", "--plot", str(plot)]) == 0
    inspection = json.loads(capsys.readouterr().out)
    assert inspection["method"] == "prefix" and len(inspection["layers"]) == 2 and plot.stat().st_size > 0
    assert main(["inspect", str(out), "--model", model_dir]) == 0
    assert "moved most in layers" in capsys.readouterr().out


def test_gradient_checkpointing_flag_alone_means_full_and_trains_the_same_prompt(model_dir, data_file, tmp_path):
    prompts = {}
    for name, flag in (("full", ["--gradient-checkpointing"]), ("off", ["--gradient-checkpointing", "off"])):
        out = tmp_path / name
        assert main(train_args(model_dir, data_file, out, "--steps", "2", *flag)) == 0
        saved = json.loads((out / "checkpoint" / "state.json").read_text())["config"]
        assert saved["gradient_checkpointing"] == name
        prompts[name] = load_prompt(out).weights
    assert torch.equal(prompts["full"], prompts["off"])


def test_a_device_this_machine_lacks_is_refused_in_one_line(model_dir, data_file, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(train_args(model_dir, data_file, tmp_path / "p", "--steps", "1", "--device", "cuda")) == 2
    assert "device 'cuda'" in capsys.readouterr().err


def test_builtin_dataset_needs_no_task_flags(model_dir, tmp_path, capsys):
    out = tmp_path / "rt"
    args = ["train", "--model", model_dir, "--data", "rotten-tomatoes", "--steps", "1", "--max-dev-examples", "8"]
    assert main([*args, "--num-virtual-tokens", "2", "--out", str(out), "--quiet"]) == 0
    meta = load_prompt(out).meta
    assert meta.template == "Review: {text}\nSentiment:" and meta.verbalizer == {
        "fresh": " positive",
        "rotten": " negative",
    }
    assert meta.init == "labels"


def test_bad_row_is_reported_with_file_and_line(model_dir, data_file, tmp_path, capsys):
    with open(data_file, "a") as f:
        f.write(json.dumps({"text": "fine", "label": "maybe"}) + "\n")
    assert main(train_args(model_dir, data_file, tmp_path / "p", "--steps", "1")) == 2
    err = capsys.readouterr().err
    assert "reviews.jsonl:41" in err and "maybe" in err and "Traceback" not in err
    assert main(train_args(model_dir, data_file, tmp_path / "p", "--steps", "1", "--skip-invalid")) == 0


@pytest.mark.parametrize(
    "method", [(), ("--method", "prefix", "--reparam", "mlp", "--reparam-hidden", "8")], ids=["prompt", "prefix-mlp"]
)
def test_ctrl_c_in_a_real_process_then_resume_equals_uninterrupted(model_dir, data_file, tmp_path, capsys, method):
    extra = ("--steps", "80", "--checkpoint-every", "1000", "--eval-every", "1000", *method)
    cut = tmp_path / "cut"
    cmd = [sys.executable, "-m", "softprompt", *train_args(model_dir, data_file, cut, *extra)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = cut / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before Ctrl-C arrived (machine too fast for this test)")
    assert proc.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    stopped_at = json.loads((cut / "checkpoint" / "state.json").read_text())["state"]["step"]
    assert 3 <= stopped_at < 80

    assert main(train_args(model_dir, data_file, cut, *extra, "--resume")) == 0
    whole = tmp_path / "whole"
    assert main(train_args(model_dir, data_file, whole, *extra)) == 0
    assert torch.equal(load_prompt(cut).weights, load_prompt(whole).weights)
    cut_state, whole_state = (load_file(str(d / "checkpoint" / "state.safetensors")) for d in (cut, whole))
    assert cut_state.keys() == whole_state.keys()  # the reparam network's parameters too
    assert all(torch.equal(cut_state[k], whole_state[k]) for k in cut_state)
    assert os.path.getsize(cut / "metrics.jsonl") > 0


def test_quickstart_prints_the_table(model_dir, tmp_path, capsys):
    out = tmp_path / "qs"
    assert (
        main(["quickstart", "--model", model_dir, "--steps", "1", "--test-examples", "6", "--out", str(out), "--quiet"])
        == 0
    )
    table = capsys.readouterr().out
    for row in (
        "accuracy before training (first 6 of 1000)",
        "accuracy after training",
        "trainable parameters",
        "prompt file size",
        "total time",
    ):
        assert row in table
    assert load_prompt(out).meta.training["steps"] == 1


def test_train_and_eval_on_a_saved_dataset_dict(model_dir, tmp_path, capsys):
    """A `datasets` DatasetDict folder: its train split trains, validation is the dev set, eval picks a split."""
    from pathlib import Path

    saved = Path(__file__).parent / "fixtures" / "datasets" / "reviews_dict"
    out = tmp_path / "prompt"
    args = ["train", "--model", model_dir, "--data", str(saved), "--num-virtual-tokens", "2", "--steps", "2"]
    assert main([*args, "--batch-size", "2", "--eval-every", "1", "--out", str(out), "--quiet"]) == 0
    meta = load_prompt(out).meta
    assert meta.verbalizer == {"neg": " neg", "pos": " pos"}  # the labels found in the train split
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["dev_n"] for r in records if "dev_n" in r][0] == 1  # the validation split
    capsys.readouterr()
    assert main(["eval", "--model", model_dir, "--prompt", str(out), "--data", str(saved), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 1  # the test split
    assert main(["eval", "--model", model_dir, "--prompt", str(out), "--data", str(saved), "--split", "train"]) == 0
    assert "n            4" in capsys.readouterr().out
