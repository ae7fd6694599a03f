"""`compare`: every method on a tiny model and a small data file; figures are measured, not constant."""

import json
import math
import random
from pathlib import Path

import pytest
import torch

from softprompt.checkpoint import has_checkpoint
from softprompt.cli import main
from softprompt.compare.baselines import fit_hard_prompt, hard_prompt_ids, instruction_for, pick_demonstrations
from softprompt.compare.config import METHODS, TRAINED, CompareConfig, parse_methods
from softprompt.compare.finetune import LoopCheckpoint, LoopConfig, lora_copy, train_classifier
from softprompt.compare.forgetting import perplexity, weights_digest
from softprompt.compare.measure import AllocatorPeak, parameter_counts
from softprompt.compare.run import result_path, run_compare
from softprompt.data import Example
from softprompt.errors import SoftPromptError
from softprompt.evaluate import encode_eval_set, evaluate
from softprompt.models import load_base_model
from softprompt.prompts.files import CONFIG_FILE, WEIGHTS_FILE
from softprompt.tasks import ClassifyTask, Encoded
from softprompt.testing import save_tiny

TEMPLATE = "Review: {text}\nSentiment:"
LABELS = {"pos": " good", "neg": " bad"}
WORDS = {"pos": ["fine", "great", "lovely", "fun"], "neg": ["dull", "awful", "boring", "weak"]}


def write_data(path: Path, n: int = 100) -> Path:
    rng = random.Random(0)
    with open(path, "w") as f:
        for i in range(n):
            label = "pos" if i % 2 else "neg"
            text = " ".join(rng.choice(WORDS[label]) for _ in range(rng.randint(2, 5)))
            f.write(json.dumps({"text": f"{text} {i}", "label": label}) + "\n")
    return path


def tiny_config(folder: Path, **overrides) -> CompareConfig:
    settings = dict(
        model=str(folder / "model"),
        data=str(folder / "data.jsonl"),
        template=TEMPLATE,
        labels=LABELS,
        steps=2,
        batch_size=4,
        test_size=8,
        num_virtual_tokens=4,
        few_shot_k=2,
        perplexity_tokens=64,
        perplexity_window=32,
        second_task=None,
        full_lr=0.05,  # large, so a couple of steps visibly change the model
        keep_weights=True,
    )
    settings.update(overrides)
    return CompareConfig(**settings)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compare")
    save_tiny("llama", folder / "model")
    write_data(folder / "data.jsonl")
    base = load_base_model(str(folder / "model"))
    return folder, base


@pytest.fixture(scope="module")
def full_run(setup):
    folder, base = setup
    out = folder / "out"
    report = run_compare(tiny_config(folder), out, base=base, show_progress=False, log=lambda m: None)
    return folder, base, out, report


def by_method(report):
    return {m["method"]: m for m in report["methods"]}


def test_report_has_every_method_and_file(full_run):
    _, _, out, report = full_run
    assert [m["method"] for m in report["methods"]] == list(METHODS)
    for name in ("report.md", "report.json", "cost.png", "quality.png", "training-loss.png"):
        assert (out / name).is_file()
    for png in out.glob("*.png"):
        assert png.read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(report))
    md = (out / "report.md").read_text()
    assert "| Trainable parameters |" in md and "Forgetting: perplexity" in md and "| Decision rule |" in md
    for m in report["methods"]:
        assert m["title"] in md
        assert 0.0 <= m["test"]["accuracy"] <= 1.0 and m["test"]["n"] == 8
        assert result_path(out, m["method"]).is_file()


def test_each_method_is_compared_with_the_most_accurate_on_the_same_test_examples(full_run):
    _, _, out, report = full_run
    methods = by_method(report)
    gaps = report["gaps"]
    best = methods[gaps["reference"]]
    assert best["test"]["accuracy"] == max(m["test"]["accuracy"] for m in methods.values())
    assert set(gaps["methods"]) == set(methods) - {gaps["reference"]}
    for name, gap in gaps["methods"].items():
        predictions = methods[name]["test"]["predictions"]
        assert len(predictions) == 8
        expected = methods[name]["test"]["accuracy"] - best["test"]["accuracy"]
        assert gap["accuracy"]["gap"] == pytest.approx(expected)  # the two accuracies' difference, not a resample's
        assert gap["accuracy"]["low"] <= gap["accuracy"]["gap"] <= gap["accuracy"]["high"]
        assert gap["macro_f1"]["gap"] == pytest.approx(methods[name]["test"]["macro_f1"] - best["test"]["macro_f1"])
    md = (out / "report.md").read_text()
    assert "## How sure the differences are (8 test examples, one seed)" in md
    assert f"Each method minus {best['title']} (the most accurate here)" in md
    for name, gap in gaps["methods"].items():
        assert f"| {methods[name]['title']} | {100 * gap['accuracy']['gap']:+.1f} [" in md


def test_parameter_counts_are_the_models_real_counts(full_run):
    _, base, _, report = full_run
    m = by_method(report)
    total = sum(p.numel() for p in base.model.parameters())
    assert report["model"]["parameters"] == total
    assert m["zero-shot"]["trainable_parameters"] == m["few-shot"]["trainable_parameters"] == 0
    assert m["prompt-tuning"]["trainable_parameters"] == 4 * base.hidden_size
    family = base.family  # a deep prompt: T x layers x (key, value) x kv heads x head dim
    deep = 4 * family.num_layers * 2 * family.num_kv_heads * family.head_dim
    assert m["prefix-tuning"]["trainable_parameters"] == m["prefix-tuning"]["details"]["stored_parameters"] == deep
    # P-tuning trains an MLP too, and stores only the folded [T, d] prompt.
    assert m["p-tuning"]["details"]["stored_parameters"] == 4 * base.hidden_size
    assert m["p-tuning"]["trainable_parameters"] > 4 * base.hidden_size
    assert m["full-finetune"]["trainable_parameters"] == total
    model, peft_model = lora_copy(base, r=8, alpha=16)
    lora_params = sum(p.numel() for n, p in model.model.named_parameters() if "lora_" in n)
    assert m["lora"]["trainable_parameters"] == lora_params > 0
    assert parameter_counts(model.model) == (lora_params, total + lora_params)


def test_storage_bytes_are_file_sizes_on_disk(full_run):
    _, _, out, report = full_run
    m = by_method(report)

    def size(folder, names=None):
        paths = [folder / n for n in names] if names else [p for p in folder.iterdir() if p.is_file()]
        return sum(p.stat().st_size for p in paths)

    for name in ("prompt-tuning", "prefix-tuning", "p-tuning"):
        assert m[name]["storage_bytes"] == size(out / name, [CONFIG_FILE, WEIGHTS_FILE])
    assert m["prefix-tuning"]["storage"].startswith("PREFIX_TUNING folder")
    assert m["lora"]["storage_bytes"] == size(out / "lora", ["adapter_config.json", "adapter_model.safetensors"])
    assert m["full-finetune"]["storage_bytes"] == size(out / "full-finetune" / "model")
    for hard in ("zero-shot", "few-shot"):
        assert m[hard]["storage_bytes"] == len(m[hard]["details"]["prompt_text"].encode())
    assert m["few-shot"]["storage_bytes"] > m["zero-shot"]["storage_bytes"]


def test_forgetting_frozen_methods_unchanged_full_finetune_measured(full_run):
    _, base, _, report = full_run
    before = report["forgetting_before"]["perplexity"]
    for name, m in by_method(report).items():
        f = m["forgetting"]
        assert f["perplexity_before"] == before
        if name in ("lora", "full-finetune"):
            assert f["measured_after"] and not f["weights_unchanged"]
        else:
            assert f["weights_unchanged"] and f["perplexity_after"] == before
    assert by_method(report)["full-finetune"]["forgetting"]["perplexity_after"] != before
    # and the caller's model was never touched by the methods that train a copy
    assert perplexity(base, _general_text(), tokens=64, window=32)["perplexity"] == pytest.approx(before)


def _general_text():
    from softprompt.data import general_english_text

    return general_english_text()


def test_training_figures_follow_the_budget(full_run):
    _, _, _, report = full_run
    seen = {by_method(report)[name]["examples_seen"] for name in TRAINED}
    assert len(seen) == 1 and 0 < seen.pop() <= 2 * 4  # the same batches for every trained method
    for name in TRAINED:
        m = by_method(report)[name]
        assert m["steps"] == 2 and len(m["details"]["losses"]) == 2
        assert m["train_seconds"] > 0 and m["training_state_bytes"] > 0
        assert all(math.isfinite(x) for x in m["details"]["losses"])
    full = by_method(report)["full-finetune"]
    # AdamW keeps two moments per weight: params + grads + 2 moments = 4 copies of every weight (fp32)
    assert full["training_state_bytes"] >= 4 * 4 * full["trainable_parameters"]


def test_other_seed_and_steps_change_the_numbers(full_run):
    folder, base, _, report = full_run
    other = run_compare(
        tiny_config(folder, seed=1, steps=3, methods=("few-shot", "prompt-tuning")),
        folder / "other",
        base=base,
        show_progress=False,
        log=lambda m: None,
    )
    a, b = by_method(report), by_method(other)
    assert b["prompt-tuning"]["steps"] == 3 and len(b["prompt-tuning"]["details"]["losses"]) == 3
    assert a["prompt-tuning"]["details"]["losses"][0] != b["prompt-tuning"]["details"]["losses"][0]
    assert a["prompt-tuning"]["details"]["nearest_tokens"] != b["prompt-tuning"]["details"]["nearest_tokens"]
    assert a["few-shot"]["details"]["demonstrations"] != b["few-shot"]["details"]["demonstrations"]
    assert [m["method"] for m in other["methods"]] == ["few-shot", "prompt-tuning"]


def test_resume_skips_finished_methods_and_refuses_other_settings(setup):
    folder, base = setup
    out = folder / "resume"
    config = tiny_config(folder, methods=("zero-shot", "few-shot"))
    run_compare(config, out, base=base, show_progress=False, log=lambda m: None)
    stamps = {m: result_path(out, m).stat().st_mtime_ns for m in ("zero-shot", "few-shot")}
    result_path(out, "few-shot").unlink()
    messages = []
    report = run_compare(config, out, base=base, resume=True, show_progress=False, log=messages.append)
    assert any("zero-shot: done in an earlier run, skipped" in m for m in messages)
    assert not any("measuring the base model" in m for m in messages)  # reused too
    assert any(m.endswith("] few-shot") for m in messages)  # measured again
    assert result_path(out, "zero-shot").stat().st_mtime_ns == stamps["zero-shot"]
    assert [m["method"] for m in report["methods"]] == ["zero-shot", "few-shot"]
    with pytest.raises(SoftPromptError, match="steps"):
        run_compare(tiny_config(folder, methods=("zero-shot",), steps=5), out, base=base, resume=True, log=print)


def test_second_task_forgetting(setup):
    folder, base = setup
    config = tiny_config(folder, methods=("zero-shot",), second_task="bbc-news", second_task_size=5,
                         second_task_max_tokens=24)  # fmt: skip
    report = run_compare(config, folder / "second", base=base, show_progress=False, log=lambda m: None)
    f = report["methods"][0]["forgetting"]
    assert f["second_task"] == "bbc-news"
    assert f["second_task_accuracy_before"] == f["second_task_accuracy_after"]
    assert report["forgetting_before"]["second_task"]["n"] == 5
    assert "Forgetting: zero-shot accuracy on bbc-news" in (folder / "second" / "report.md").read_text()


def test_demonstrations_are_balanced_and_seeded():
    task = ClassifyTask(TEMPLATE, LABELS)
    train = [Example(f"t{i}", "pos" if i % 3 else "neg", f"x:{i}") for i in range(30)]
    demos = pick_demonstrations(task, train, 4, seed=0)
    assert sorted(d.output for d in demos) == ["neg", "neg", "pos", "pos"]
    assert demos == pick_demonstrations(task, train, 4, seed=0)
    assert demos != pick_demonstrations(task, train, 4, seed=1)
    assert instruction_for(task) == "Classify the text. Answer with one of: good, bad."


def test_hard_prompt_holds_instruction_and_demonstrations(tiny_models):
    base = tiny_models("llama")
    task = ClassifyTask(TEMPLATE, LABELS)
    demo = Example("what fun", "pos", "x:1")
    text = base.tokenizer.decode(hard_prompt_ids(base, task, "Say it.", [demo], None))
    assert text == "Say it.\n\nReview: what fun\nSentiment: good\n\n"


def test_perplexity_matches_the_models_own_loss(tiny_models):
    base = tiny_models("gpt2")
    text = "The quick brown fox jumps over the lazy dog. " * 4
    ids = torch.tensor([base.encode(text)[:40]])
    with torch.no_grad():
        want = math.exp(base.model(input_ids=ids, labels=ids).loss.item())
    assert perplexity(base, text, tokens=40, window=40)["perplexity"] == pytest.approx(want, rel=1e-5)


def test_weights_digest_sees_any_change(tiny_models):
    base = tiny_models("llama")
    before = weights_digest(base.model)
    weight = next(base.model.parameters())
    with torch.no_grad():
        weight[0, 0] += 1e-3
        changed = weights_digest(base.model)
        weight[0, 0] -= 1e-3
    assert changed != before


def test_config_validation():
    assert parse_methods("lora, zero-shot") == ("zero-shot", "lora")
    assert parse_methods("p-tuning,prefix-tuning") == ("prefix-tuning", "p-tuning")
    with pytest.raises(SoftPromptError, match="unknown"):
        parse_methods("lora,adapter")
    with pytest.raises(SoftPromptError, match="steps must be at least 1"):
        CompareConfig(steps=0)
    with pytest.raises(SoftPromptError, match="lora_lr must be a positive number"):
        CompareConfig(lora_lr=-1)


def test_cli_prints_the_table(setup, capsys):
    folder, _ = setup
    args = ["compare", "--model", str(folder / "model"), "--data", str(folder / "data.jsonl"),
            "--template", TEMPLATE, "--labels", "pos=good,neg=bad", "--methods", "zero-shot,few-shot",
            "--test-size", "6", "--perplexity-tokens", "32", "--second-task", "none", "--quiet",
            "--out", str(folder / "cli")]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("| Feature | Hard prompt, zero-shot | Hard prompt, few-shot |")
    assert "## How sure the differences are (6 test examples, one seed)" in out
    assert len([line for line in out.split("How sure")[1].splitlines() if line.startswith("| Hard prompt")]) == 1
    assert (folder / "cli" / "report.md").is_file()
    assert main([*args[:-2], "--out", str(folder / "cli2"), "--methods", "nope"]) == 2
    assert "--methods: unknown nope" in capsys.readouterr().err
    assert main([*args[:-2], "--out", str(folder / "cli2"), "--lora-lr", "-1"]) == 2
    assert "--lora-lr must be a positive number" in capsys.readouterr().err


def test_interrupted_prompt_tuning_is_not_recorded(setup, monkeypatch):
    import softprompt.compare.prompt_tuning as pt

    folder, base = setup
    real_train = pt.run_training

    def interrupted(*args, **kwargs):
        result = real_train(*args, **kwargs)
        result.status = "interrupted"  # what train() returns after Ctrl-C
        return result

    monkeypatch.setattr(pt, "run_training", interrupted)
    out = folder / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        run_compare(tiny_config(folder, methods=("zero-shot", "prompt-tuning")), out, base=base,
                    show_progress=False, log=lambda m: None)  # fmt: skip
    assert result_path(out, "zero-shot").is_file()
    assert not result_path(out, "prompt-tuning").exists()


def test_first_tokens_equal_encoding_the_whole_text(tiny_models):
    from softprompt.compare.forgetting import first_tokens

    base = tiny_models("gpt2")
    text = "General English text, with words of several lengths. " * 50
    for n in (1, 7, 100, len(base.encode(text)) + 5):
        assert first_tokens(base, text, n) == base.encode(text)[:n]


def test_default_model_is_the_packages_default():
    from softprompt.compare import config
    from softprompt.models import DEFAULT_MODEL

    assert config.DEFAULT_MODEL == DEFAULT_MODEL == CompareConfig().model


def test_several_models_chart_each_method_against_model_size(setup, capsys):
    """The power of scale: the same comparison per model, then accuracy and macro-F1 against parameters."""
    folder, _ = setup
    save_tiny("gpt2", folder / "gpt2")
    args = ["compare", "--model", str(folder / "model"), "--model", str(folder / "gpt2"), "--data",
            str(folder / "data.jsonl"), "--template", TEMPLATE, "--labels", "pos=good,neg=bad", "--methods",
            "zero-shot,prompt-tuning,prefix-tuning", "--steps", "1", "--test-size", "6", "--perplexity-tokens", "32",
            "--second-task", "none", "--quiet", "--out", str(folder / "scale")]  # fmt: skip
    assert main(args) == 0
    assert capsys.readouterr().out.startswith("# The power of scale")
    scale = json.loads((folder / "scale" / "scale.json").read_text())
    sizes = [row["parameters"] for row in scale["models"]]
    assert sizes == sorted(sizes) and len(sizes) == 2
    assert [m["method"] for m in scale["methods"]] == ["zero-shot", "prompt-tuning", "prefix-tuning"]
    assert {row["folder"] for row in scale["models"]} == {"1-model", "2-gpt2"}
    for row in scale["models"]:
        report = json.loads((folder / "scale" / row["folder"] / "report.json").read_text())
        assert report["config"]["model"] == row["model"]
        for m in report["methods"]:
            assert row["test"][m["method"]]["accuracy"] == m["test"]["accuracy"]
    assert (folder / "scale" / "scale.png").read_bytes()[:4] == b"\x89PNG"
    assert "| parameters |" in (folder / "scale" / "scale.md").read_text()


def test_a_saved_dataset_dict_brings_its_own_train_and_test_splits():
    from pathlib import Path

    from softprompt.compare.task_data import load_task_data

    saved = Path(__file__).parent / "fixtures" / "datasets" / "reviews_dict"
    config = CompareConfig(data=str(saved), template="R: {text}\nS:", labels={"pos": " yes", "neg": " no"})
    data = load_task_data(config)
    assert len(data.train) == 4 and [ex.input for ex in data.test] == ["a mess"]
    assert data.test[0].where == "reviews_dict[test]:1" and "its own test split" in data.description


def test_allocator_peak_counts_tensors_made_inside_not_those_freed_or_kept_from_before():
    kept = torch.ones(2_000_000)  # 8 MB alive before: freeing it inside must not read as negative growth
    with AllocatorPeak() as peak:
        a = torch.ones(1_000_000)  # 4 MB
        b = torch.ones(500_000)  # +2 MB at the peak
        del a, b, kept
        c = torch.ones(250_000)
    assert 6_000_000 <= peak.peak_increase < 6_500_000
    assert c.numel() == 250_000


def test_few_shot_keeps_only_the_demonstrations_that_fit_the_context_beside_the_longest_input(tiny_models):
    base = tiny_models("gpt2")  # learned positions: a hard prompt past the context would fail inside torch
    task = ClassifyTask(TEMPLATE, LABELS)
    context = base.family.context_length
    demos = [Example("fine " * 5, "pos", f"x:{i}") for i in range(8)]  # ~40 tokens each
    rows = encode_eval_set(base, task, [Example("great " * 20, "pos", "t:1")]).rows
    ids, kept = fit_hard_prompt(base, task, "Say it.", demos, rows, None)
    assert 0 < len(kept) < len(demos) and kept == demos[: len(kept)]
    assert len(ids) + len(rows[0].ids) + task.answer_tokens(base) <= context
    longer = hard_prompt_ids(base, task, "Say it.", demos[: len(kept) + 1], None)
    assert len(longer) + len(rows[0].ids) + task.answer_tokens(base) > context  # the most that fit
    assert evaluate(base, task, base.embed(torch.tensor(ids)), rows)["n"] == 1
    assert fit_hard_prompt(base, task, "Say it.", demos[:1], rows[:0], None)[1] == demos[:1]


def test_the_report_says_how_many_demonstrations_fit():
    from softprompt.compare.report import _demonstrations

    report = {"config": {"few_shot_k": 4}, "methods": [{"method": "few-shot", "examples_seen": 4}]}
    assert _demonstrations(report) == "4"
    report["methods"][0]["examples_seen"] = 1
    assert _demonstrations(report) == "1 (of the 4 asked; no more fit the model's context)"


def _lora_weights(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.model.named_parameters() if "lora_" in n}


def test_lora_init_follows_the_seed_and_leaves_the_global_generator(tiny_models):
    base = tiny_models("llama")
    before = torch.random.get_rng_state()
    first = _lora_weights(lora_copy(base, 4, 8, seed=1)[0])
    assert torch.equal(torch.random.get_rng_state(), before)
    again = _lora_weights(lora_copy(base, 4, 8, seed=1)[0])
    other = _lora_weights(lora_copy(base, 4, 8, seed=2)[0])
    assert first.keys() == again.keys() == other.keys() and first
    assert all(torch.equal(first[n], again[n]) for n in first)
    assert not all(torch.equal(first[n], other[n]) for n in first)


def test_classifier_loop_refuses_a_checkpoint_of_other_settings(tiny_models, tmp_path):
    base = tiny_models("llama")
    task = ClassifyTask("Text: {text}\nLabel:", {"a": " yes", "b": " no"})
    rows = [Encoded((5, 6, 7), i % 2) for i in range(8)]
    checkpoint = LoopCheckpoint(tmp_path / "checkpoint", every=1)
    model, _ = lora_copy(base, 4, 8, seed=0)
    train_classifier(model, task, rows, LoopConfig(3, 2, 1e-3), show_progress=False, checkpoint=checkpoint)
    assert has_checkpoint(checkpoint.folder)
    model, _ = lora_copy(base, 4, 8, seed=0)
    with pytest.raises(SoftPromptError, match="other settings.*delete the folder"):
        train_classifier(model, task, rows, LoopConfig(3, 2, 2e-3), show_progress=False, checkpoint=checkpoint)
    with pytest.raises(SoftPromptError, match="at least 1"):
        LoopCheckpoint(tmp_path, every=0)


def test_several_seeds_report_each_methods_mean_spread_and_paired_gap(setup, capsys):
    """--seed 0 --seed 1: one comparison per seed on the same test examples, then mean ± sd and gaps."""
    folder, _ = setup
    out = folder / "seeds"
    args = ["compare", "--model", str(folder / "model"), "--data", str(folder / "data.jsonl"), "--template",
            TEMPLATE, "--labels", "pos=good,neg=bad", "--methods", "zero-shot,few-shot,prompt-tuning", "--steps", "2",
            "--test-size", "8", "--perplexity-tokens", "32", "--second-task", "none", "--quiet",
            "--seed", "3", "--seed", "5", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"# {folder / 'model'} on {folder / 'data.jsonl'}: every method over 2 seeds")
    summary = json.loads((out / "seeds.json").read_text())
    reports = {s: json.loads((out / f"seed-{s}" / "report.json").read_text()) for s in (3, 5)}
    assert [r["config"]["seed"] for r in reports.values()] == [3, 5]
    # A data file without its own test split is cut once, with the first seed: the gaps stay paired.
    assert reports[3]["data"]["test_gold"] == reports[5]["data"]["test_gold"]
    assert {r["config"]["split_seed"] for r in reports.values()} == {3}
    assert summary["config"]["seeds"] == [3, 5] and "seed" not in summary["config"]
    for m in summary["methods"]:
        runs = [by_method(reports[s])[m["method"]] for s in (3, 5)]
        accuracies = [r["test"]["accuracy"] for r in runs]
        assert m["test"]["accuracy"] == pytest.approx(sum(accuracies) / 2)
        assert m["spread"]["accuracy"] == pytest.approx(abs(accuracies[0] - accuracies[1]) / math.sqrt(2))
        assert m["per_seed"]["5"]["macro_f1"] == runs[1]["test"]["macro_f1"]
        assert m["train_seconds"] == pytest.approx((runs[0]["train_seconds"] + runs[1]["train_seconds"]) / 2)
    pt = [by_method(reports[s])["prompt-tuning"] for s in (3, 5)]
    assert pt[0]["details"]["losses"] != pt[1]["details"]["losses"]  # each seed trained its own prompt
    methods = {m["method"]: m for m in summary["methods"]}
    gaps = summary["gaps"]
    assert gaps["reference"] == max(methods.values(), key=lambda m: m["test"]["accuracy"])["method"]
    for name, gap in gaps["methods"].items():
        expected = methods[name]["test"]["accuracy"] - methods[gaps["reference"]]["test"]["accuracy"]
        assert gap["accuracy"]["gap"] == pytest.approx(expected)
        assert gap["accuracy"]["low"] <= gap["accuracy"]["gap"] <= gap["accuracy"]["high"]
    md = (out / "seeds.md").read_text()
    assert "## How sure the differences are (8 test examples, 2 seeds)" in md
    assert "| Prompt tuning (softprompt) |" in md and "| Method | seed 3 | seed 5 |" in md
    # Resumed, nothing is measured again and the summary is the same.
    assert main([*args, "--resume"]) == 0
    capsys.readouterr()
    assert json.loads((out / "seeds.json").read_text()) == summary
    assert main([*args[:-4], "--seed", "3", "--seed", "3", "--out", str(folder / "same-seed")]) == 2
    assert "two or more different seeds" in capsys.readouterr().err


def test_seeds_that_scored_other_test_examples_are_refused():
    from softprompt.compare.seeds import build_seeds

    def report(gold):
        method = {"method": "zero-shot", "title": "Z", "test": {"accuracy": 1.0, "macro_f1": 1.0, "predictions": gold},
                  "train_seconds": 0.0, "trainable_parameters": 0, "storage_bytes": 1, "steps": 0}  # fmt: skip
        data = {"name": "d", "test_gold": gold, "verbalizer": {"pos": " good", "neg": " bad"}}
        return {"config": {"model": "m", "seed": 0}, "model": {"parameters": 1}, "data": data, "methods": [method]}

    summary = build_seeds({0: report(["pos", "neg"]), 1: report(["pos", "neg"])})
    assert summary["methods"][0]["spread"]["accuracy"] == 0.0 and summary["gaps"] == {}
    with pytest.raises(SoftPromptError, match="different test examples"):
        build_seeds({0: report(["pos", "neg"]), 1: report(["neg", "pos"])})


def test_several_models_and_seeds_chart_the_means(setup, capsys):
    folder, _ = setup
    if not (folder / "gpt2").is_dir():
        save_tiny("gpt2", folder / "gpt2")
    out = folder / "scale-seeds"
    args = ["compare", "--model", str(folder / "model"), "--model", str(folder / "gpt2"), "--data",
            str(folder / "data.jsonl"), "--template", TEMPLATE, "--labels", "pos=good,neg=bad", "--methods",
            "zero-shot,prompt-tuning", "--steps", "1", "--test-size", "6", "--perplexity-tokens", "32",
            "--second-task", "none", "--quiet", "--seed", "0", "--seed", "1", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    assert "(figures: the mean over seeds 0, 1)" in capsys.readouterr().out
    scale = json.loads((out / "scale.json").read_text())
    for row in scale["models"]:
        summary = json.loads((out / row["folder"] / "seeds.json").read_text())
        assert (out / row["folder"] / "seed-1" / "report.json").is_file()
        for m in summary["methods"]:
            assert row["test"][m["method"]]["accuracy"] == m["test"]["accuracy"]


def test_prompt_methods_and_lora_on_conversations(tmp_path):
    """Chat data compares as classification through chat: the final replies are the labels."""
    from softprompt.compare.task_data import load_task_data
    from softprompt.tasks.chat import ChatClassifyTask
    from softprompt.testing import CHAT_TEMPLATES, tiny_model

    model, tokenizer = tiny_model("llama")
    tokenizer.chat_template = CHAT_TEMPLATES["llama3"]
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    system = {"role": "system", "content": "Good or bad?"}
    with open(tmp_path / "data.jsonl", "w") as f:
        for i in range(40):
            reply = "good" if i % 2 else "bad"
            turns = [system, {"role": "user", "content": f"{WORDS['pos' if i % 2 else 'neg'][i % 4]} {i}"}]
            f.write(json.dumps({"messages": [*turns, {"role": "assistant", "content": reply}]}) + "\n")
    config = tiny_config(tmp_path, template=None, labels=None, methods=("zero-shot", "prompt-tuning", "lora"))
    data = load_task_data(config)
    assert isinstance(data.task, ChatClassifyTask) and data.task.labels == ("bad", "good")
    assert data.task.system == "Good or bad?" and len(data.test) == 4
    base = load_base_model(str(tmp_path / "model"))
    report = run_compare(config, tmp_path / "out", base=base, show_progress=False, log=lambda m: None)
    methods = by_method(report)
    assert set(methods) == {"zero-shot", "prompt-tuning", "lora"}
    assert all(0 <= m["test"]["accuracy"] <= 1 and m["test"]["n"] == 4 for m in methods.values())
