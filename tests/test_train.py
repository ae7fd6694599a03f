"""The trainer: frozen base, reproducibility, resume after Ctrl-C, NaN stop, accumulation, early stop, files."""

import json
import os
import random
import signal

import pytest
import torch
from peft import PeftModel

from softprompt.checkpoint import load_checkpoint
from softprompt.data import Example
from softprompt.errors import SoftPromptError
from softprompt.evaluate import encode_eval_set
from softprompt.forward import prompt_state
from softprompt.optim import lr_factor
from softprompt.prompts.methods import load_prompt
from softprompt.prompts.plain import SoftPrompt
from softprompt.prompts.prefix import PrefixPrompt
from softprompt.prompts.reparam import TrainablePrompt
from softprompt.tasks import ClassifyTask, GenerateTask
from softprompt.testing import tiny_base
from softprompt.train import BatchPlan, TrainConfig, TrainingError, _State, _train_step, encode_examples, train

TASK = ClassifyTask("Review: {text}\nSentiment:", {"pos": "y", "neg": "n"})


def examples(n=48, seed=0):
    r = random.Random(seed)
    out = []
    for i in range(n):
        label = "pos" if i % 2 else "neg"
        word = "good " if label == "pos" else "bad "
        out.append(Example(word * r.randint(1, 3) + "x" * r.randint(0, 6), label, f"t.jsonl:{i + 1}"))
    return out


def setup(base, n=48):
    rows, _ = encode_examples(base, TASK, examples(n))
    dev = encode_eval_set(base, TASK, examples(12, seed=1))
    return rows, dev


def config(**kw):
    base = dict(
        num_virtual_tokens=4, steps=8, batch_size=6, eval_every=3, checkpoint_every=2, optimizer="adamw", lr=0.05,
        method="prompt",
    )  # fmt: skip
    return TrainConfig(**{**base, **kw})


def run(base, out, cfg, rows, dev, **kw):
    return train(base, TASK, rows, dev, cfg, out, show_progress=False, **kw)


def test_base_model_stays_bitwise_unchanged(tiny_models, tmp_path):
    base = tiny_models("llama")
    before = {n: p.detach().clone() for n, p in base.model.named_parameters()}
    rows, dev = setup(base)
    result = run(base, tmp_path, config(steps=3), rows, dev)
    assert result.steps == 3
    for name, p in base.model.named_parameters():
        assert torch.equal(p, before[name]) and p.grad is None and not p.requires_grad, name
    assert not torch.equal(result.prompt.embeddings, result.prompt.initial)  # the prompt did learn


def test_same_seed_same_prompt_other_seed_other_prompt(tiny_models, tmp_path):
    base = tiny_models("gpt2")
    rows, dev = setup(base)
    a = run(base, tmp_path / "a", config(steps=4), rows, None).prompt.embeddings
    b = run(base, tmp_path / "b", config(steps=4), rows, None).prompt.embeddings
    c = run(base, tmp_path / "c", config(steps=4, seed=1), rows, None).prompt.embeddings
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(optimizer="adafactor", lr=0.3),
        dict(optimizer="adamw", grad_accum=2, warmup_steps=3, schedule="linear"),
        dict(method="prefix"),
        dict(method="prefix", reparam="mlp", reparam_hidden=8),
        dict(reparam="residual", optimizer="adafactor", lr=0.3),
    ],
    ids=["adafactor", "adamw-accum-warmup", "prefix", "prefix-mlp", "residual-adafactor"],
)
def test_resume_after_ctrl_c_equals_uninterrupted_run(tiny_models, tmp_path, overrides):
    base = tiny_models("llama")
    rows, dev = setup(base)
    cfg = config(**overrides)
    whole = run(base, tmp_path / "whole", cfg, rows, dev)

    def ctrl_c_at_5(step):
        if step == 5:
            os.kill(os.getpid(), signal.SIGINT)  # the real signal: the trainer's handler must catch it

    cut = run(base, tmp_path / "cut", cfg, rows, dev, on_step=ctrl_c_at_5)
    assert cut.status == "interrupted" and cut.steps == 5
    assert json.loads((tmp_path / "cut" / "checkpoint" / "state.json").read_text())["state"]["step"] == 5
    resumed = run(base, tmp_path / "cut", cfg, rows, dev, resume=True)
    assert resumed.status == "finished" and resumed.steps == 8

    assert torch.equal(resumed.prompt.weights, whole.prompt.weights)
    final_cut = load_checkpoint(tmp_path / "cut" / "checkpoint").tensors
    final_whole = load_checkpoint(tmp_path / "whole" / "checkpoint").tensors
    assert final_cut.keys() == final_whole.keys()  # the reparam network too: resume continues it exactly
    assert all(torch.equal(final_cut[name], final_whole[name]) for name in final_cut)
    steps = lambda d: [r["step"] for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines())]
    assert steps(tmp_path / "cut") == steps(tmp_path / "whole")


def test_resume_refuses_other_settings(tiny_models, tmp_path):
    base = tiny_models("llama")
    rows, dev = setup(base)
    run(base, tmp_path, config(steps=2), rows, dev)
    with pytest.raises(SoftPromptError, match="lr"):
        run(base, tmp_path, config(steps=2, lr=0.1), rows, dev, resume=True)
    with pytest.raises(SoftPromptError, match="method: checkpoint 'prompt', now 'prefix'"):
        run(base, tmp_path, config(steps=2, method="prefix"), rows, dev, resume=True)
    with pytest.raises(SoftPromptError, match="no checkpoint"):
        run(base, tmp_path / "empty", config(steps=2), rows, dev, resume=True)


def test_gradient_checkpointing_changes_memory_not_the_prompt_and_may_change_on_resume(tiny_models, tmp_path):
    base = tiny_models("gemma3")
    rows, dev = setup(base)
    whole = run(base, tmp_path / "off", config(steps=4, gradient_checkpointing="off"), rows, dev)
    for mode in ("selective", "full"):
        again = run(base, tmp_path / mode, config(steps=4, gradient_checkpointing=mode), rows, dev)
        assert torch.equal(again.prompt.embeddings, whole.prompt.embeddings), mode

    def ctrl_c_at_2(step):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    cut = run(base, tmp_path / "cut", config(steps=4, gradient_checkpointing="off"), rows, dev, on_step=ctrl_c_at_2)
    assert cut.steps == 2
    resumed = run(base, tmp_path / "cut", config(steps=4, gradient_checkpointing="full"), rows, dev, resume=True)
    assert torch.equal(resumed.prompt.embeddings, whole.prompt.embeddings)


@pytest.mark.parametrize("mode", ["selective", "full"])
def test_a_bf16_model_trains_an_fp32_prompt(tmp_path, mode):
    """The GPU set-up on CPU: bf16 weights; the prompt, its gradient and optimiser state stay fp32."""
    base = tiny_base("llama")
    base.model.to(torch.bfloat16)
    rows, dev = setup(base)
    result = run(base, tmp_path, config(steps=2, gradient_checkpointing=mode), rows, dev)
    assert result.prompt.embeddings.dtype == torch.float32
    assert not torch.equal(result.prompt.embeddings, result.prompt.initial)
    assert {t.dtype for t in load_checkpoint(tmp_path / "checkpoint").tensors.values()} == {torch.float32}

    batch, target = TASK.collate(base, rows[:6])
    grads = []
    for dtype in (torch.bfloat16, torch.float32):
        base.model.to(dtype)
        prompt = result.prompt.embeddings.detach().clone().requires_grad_(True)
        TASK.loss(base, prompt_state(base, prompt), batch, target).backward()
        assert prompt.grad.dtype == torch.float32
        grads.append(prompt.grad.flatten())
    assert torch.nn.functional.cosine_similarity(grads[0], grads[1], dim=0) > 0.99


class NaNAfter(ClassifyTask):
    """A task whose loss turns NaN on call `after` (simulates a diverging run)."""

    def loss(self, base, prompt, batch, target):
        calls = getattr(self, "_calls", 0) + 1
        object.__setattr__(self, "_calls", calls)
        value = super().loss(base, prompt, batch, target)
        return value * float("nan") if calls >= 4 else value


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(tiny_models, tmp_path):
    base = tiny_models("llama")
    rows, dev = setup(base)
    task = NaNAfter(TASK.template, TASK.verbalizer)
    with pytest.raises(TrainingError, match="loss became nan at step 4.*lower --lr"):
        train(base, task, rows, dev, config(checkpoint_every=1), tmp_path, show_progress=False)
    kept = load_checkpoint(tmp_path / "checkpoint")
    assert kept.values["state"]["step"] == 3
    assert torch.isfinite(kept.tensors["prompt"]).all()
    assert torch.isfinite(SoftPrompt.load(tmp_path).embeddings).all()  # best prompt (dev eval at step 3)


class FixedPlan:
    def __init__(self, batches):
        self.batches = batches

    def take(self, position):
        return self.batches[position[1]], (0, position[1] + 1)


def test_grad_accumulation_equals_one_big_batch(tiny_models):
    base = tiny_models("gemma3")
    rows, _ = setup(base, n=8)
    grads = []
    for accum, plan in ((1, FixedPlan([[0, 1, 2, 3, 4]])), (2, FixedPlan([[0, 1, 2], [3, 4]]))):
        prompt = TrainablePrompt(SoftPrompt.initialize(base, 4, "random", seed=3))
        loss, n = _train_step(base, TASK, rows, plan, _State(), prompt, config(grad_accum=accum))
        grads.append((loss, n, prompt.parameters()[0].grad.clone()))
    assert grads[0][1] == grads[1][1] == 5
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-5)
    torch.testing.assert_close(grads[0][2], grads[1][2], atol=1e-6, rtol=1e-4)


def test_early_stopping_and_best_prompt_kept(tiny_models, tmp_path, monkeypatch):
    # Every dev evaluation scores the same, loss included, so none after the first is better. (A tiny LR
    # cannot promise that: the dev loss then moves in its last bits, by a machine's rounding.)
    seen = []

    def same_score_every_time(base, task, prompt, rows, *, batch_size, dist):
        seen.append(prompt.embeddings.detach().clone())
        return {"accuracy": 0.5, "loss": 0.7}

    monkeypatch.setattr("softprompt.train.evaluate_sharded", same_score_every_time)
    base = tiny_models("llama")
    rows, dev = setup(base)
    result = run(base, tmp_path, config(steps=50, eval_every=1, patience=2), rows, dev)
    assert result.status == "early_stopped" and result.steps == 3 and result.best_step == 1
    assert len(seen) == 3 and not torch.equal(seen[0], seen[2])  # the prompt trained on after its best step
    saved = SoftPrompt.load(tmp_path, base)
    assert torch.equal(saved.embeddings, seen[0])  # the prompt as it was at step 1, not the last one
    assert torch.equal(saved.embeddings, load_checkpoint(tmp_path / "checkpoint").tensors["best_prompt"])
    assert saved.meta.training["best_step"] == 1 and saved.meta.training["status"] == "early_stopped"
    assert saved.meta.task == "classify" and saved.meta.verbalizer == TASK.verbalizer


def test_saved_prompt_loads_in_peft_and_checkpoint_has_no_pickle(tiny_models, tmp_path):
    base = tiny_models("gpt2")
    rows, dev = setup(base)
    result = run(base, tmp_path, config(steps=2), rows, dev)
    assert sorted(os.listdir(tmp_path / "checkpoint")) == ["state.json", "state.safetensors"]
    peft_model = PeftModel.from_pretrained(base.model, tmp_path)
    try:
        weight = peft_model.prompt_encoder.default.embedding.weight
        torch.testing.assert_close(weight, result.prompt.embeddings)
    finally:
        peft_model.base_model.__dict__.pop("prepare_inputs_for_generation", None)


def test_batch_plan_covers_each_example_once_per_epoch_and_buckets_by_length():
    lengths = [random.Random(i).randint(1, 50) for i in range(103)]
    plan = BatchPlan(lengths, 8, seed=0, bucket_batches=4)
    epoch0 = plan.epoch(0)
    assert sorted(i for b in epoch0 for i in b) == list(range(103))
    assert epoch0 == BatchPlan(lengths, 8, seed=0, bucket_batches=4).epoch(0)
    assert epoch0 != plan.epoch(1)
    assert all([lengths[i] for i in b] == sorted(lengths[i] for i in b) for b in epoch0)
    # Bucketing: far less padding than random batches.
    pad = lambda batches: sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)
    assert pad(epoch0) < pad([list(range(i, min(i + 8, 103))) for i in range(0, 103, 8)])
    position, seen = (0, 0), 0
    while position[0] == 0:
        batch, position = plan.take(position)
        seen += len(batch)
    assert seen == 103 and position == (1, 0)


def test_warmup_then_schedule():
    f = lambda s, sched: lr_factor(s, warmup_steps=4, total_steps=14, schedule=sched)
    assert [f(s, "constant") for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert f(9, "linear") == pytest.approx(0.5) and f(14, "linear") == 0.0
    assert f(9, "cosine") == pytest.approx(0.5) and f(4, "cosine") == 1.0


def test_bad_configs_are_refused():
    with pytest.raises(SoftPromptError, match="give steps or epochs, not both"):
        TrainConfig(steps=3, epochs=1)
    with pytest.raises(SoftPromptError, match="batch_size must be at least 1"):
        TrainConfig(batch_size=0)
    with pytest.raises(SoftPromptError, match="optimizer must be one of"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(SoftPromptError, match="gradient_checkpointing must be one of off, selective, full"):
        TrainConfig(gradient_checkpointing="yes")
    with pytest.raises(SoftPromptError, match="seed must be a whole number, got 'abc'"):
        TrainConfig(seed="abc")
    assert TrainConfig(epochs=2, batch_size=10, grad_accum=2).total_steps(100) == 10


@pytest.mark.parametrize("kind", ["llama", "t5"])
def test_generate_task_trains(tiny_models, tmp_path, kind):
    base = tiny_models(kind)
    task = GenerateTask("Q: {text}\nA:")
    data = [Example(f"say {w}", w, f"g:{i}") for i, w in enumerate(["yes", "no", "ok", "fine"] * 3)]
    rows, _ = encode_examples(base, task, data)
    dev = encode_eval_set(base, task, data[:4])
    cfg = TrainConfig(
        method="prompt",
        num_virtual_tokens=3,
        init="vocab",
        steps=3,
        batch_size=4,
        eval_every=3,
        optimizer="adamw",
        lr=0.1,
    )
    result = train(base, task, rows, dev, cfg, tmp_path, show_progress=False)
    assert result.metric == "token_f1" and result.steps == 3
    assert SoftPrompt.load(tmp_path).meta.task == "generate"


def test_init_from_another_models_prompt_needs_allow_mismatch(tiny_models, tmp_path):
    from softprompt.testing import tiny_base

    base, other = tiny_models("llama"), tiny_base("llama", seed=1)
    rows, _ = setup(base)
    source = run(base, tmp_path / "src", config(steps=1), rows, None).prompt
    other_rows, _ = setup(other)
    cfg = config(steps=1, init=f"file:{tmp_path / 'src'}")
    with pytest.raises(SoftPromptError, match="allow-model-mismatch"):
        train(other, TASK, other_rows, None, cfg, tmp_path / "dst", show_progress=False)
    result = train(other, TASK, other_rows, None, cfg, tmp_path / "dst", show_progress=False, allow_model_mismatch=True)
    assert torch.equal(result.prompt.initial, source.embeddings)


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_a_deep_prompt_trains_on_both_task_kinds_and_saves_a_prefix_folder(tiny_models, tmp_path, kind):
    base = tiny_models(kind)
    rows, dev = setup(base)
    result = run(base, tmp_path / "c", config(steps=3, method="prefix", reparam="residual"), rows, dev)
    saved = load_prompt(tmp_path / "c", base)
    assert isinstance(saved, PrefixPrompt) and torch.equal(saved.prefix, result.prompt.weights)
    assert not torch.equal(saved.prefix, saved.initial)
    assert saved.meta.training["method"] == "prefix" and saved.meta.training["reparam"] == "residual"
    task = GenerateTask("Q: {text}\nA:")
    data = [Example(f"say {w}", w, f"g:{i}") for i, w in enumerate(["yes", "no", "ok", "fine"] * 3)]
    gen_rows, _ = encode_examples(base, task, data)
    cfg = TrainConfig(num_virtual_tokens=3, init="vocab", steps=2, batch_size=4, method="prefix", reparam="mlp")
    train(base, task, gen_rows, encode_eval_set(base, task, data[:4]), cfg, tmp_path / "g", show_progress=False)
    assert load_prompt(tmp_path / "g").meta.task == "generate"


def test_a_checkpoint_from_before_methods_resumes_as_a_plain_prompt(tiny_models, tmp_path):
    """Settings a checkpoint predates count as their defaults; its plain "prompt" tensor restarts the run."""
    from softprompt.checkpoint import Checkpoint, save_checkpoint

    base = tiny_models("llama")
    rows, dev = setup(base)
    cfg = config()
    whole = run(base, tmp_path / "whole", cfg, rows, dev)
    run(base, tmp_path / "old", config(steps=8), rows, dev, on_step=lambda s: s == 4 and os.kill(os.getpid(), 2))
    ckpt = load_checkpoint(tmp_path / "old" / "checkpoint")
    old_config = {k: v for k, v in ckpt.values["config"].items() if k not in ("method", "reparam", "reparam_hidden")}
    old_tensors = {k: v for k, v in ckpt.tensors.items() if not k.startswith("encoder.")}
    save_checkpoint(tmp_path / "old" / "checkpoint", Checkpoint(old_tensors, {**ckpt.values, "config": old_config}))
    resumed = run(base, tmp_path / "old", cfg, rows, dev, resume=True)
    assert torch.equal(resumed.prompt.weights, whole.prompt.weights)


def test_a_huge_text_is_cut_to_the_context_before_tokenizing_and_a_row_past_it_is_refused(tiny_models, tmp_path):
    base = tiny_models("gpt2")
    context = base.family.context_length
    huge = Example("good " * 2_000_000, "pos", "t.jsonl:7")  # 10 MB: tokenized whole it would take gigabytes
    (row,), cut = encode_examples(base, TASK, [huge])
    assert cut == 1 and row.truncated and len(row.ids) == context
    with pytest.raises(
        SoftPromptError,
        match=rf"t.jsonl:7: the example takes {context} tokens \(input and answer\); with 4 virtual .* --max-input-tokens \(at most {context - 4}\)",
    ):
        train(base, TASK, [row], None, TrainConfig(steps=1, num_virtual_tokens=4), tmp_path, show_progress=False)
    assert not any(tmp_path.iterdir())  # refused before anything was written
    limit = context - 4  # room for the virtual tokens (a label is read at the last input position)
    rows, _ = encode_examples(base, TASK, [huge, *examples(3)], max_tokens=limit)
    train(base, TASK, rows, None, TrainConfig(steps=1, num_virtual_tokens=4), tmp_path, show_progress=False)


def test_a_multi_token_label_needs_its_room_after_the_input(tiny_models, tmp_path):
    base = tiny_models("gpt2")  # learned positions: one past the context fails inside torch, so it is refused first
    task = ClassifyTask("R: {text}\nA:", {"pos": " yes", "neg": " no"})
    answer = task.answer_tokens(base)
    assert answer == max(len(base.encode(" yes")), len(base.encode(" no"))) - 1 > 0
    limit = base.family.context_length - 4 - answer
    huge = [Example("good " * 5000, "pos", "t.jsonl:1"), Example("bad", "neg", "t.jsonl:2")]
    fits, _ = encode_examples(base, task, huge, max_tokens=limit)
    train(base, task, fits, None, TrainConfig(steps=1, num_virtual_tokens=4), tmp_path / "a", show_progress=False)
    over, _ = encode_examples(base, task, huge, max_tokens=limit + 1)
    with pytest.raises(SoftPromptError, match=rf"t.jsonl:1: .*at most {limit}\)"):
        train(base, task, over, None, TrainConfig(steps=1, num_virtual_tokens=4), tmp_path / "b", show_progress=False)


def test_a_dev_row_past_the_context_is_refused_before_training_starts(tiny_models, tmp_path):
    base = tiny_models("gpt2")
    rows, _ = encode_examples(base, TASK, examples(3))
    dev = encode_eval_set(base, TASK, [Example("good " * 5000, "pos", "dev.jsonl:2")])
    with pytest.raises(SoftPromptError, match=r"dev.jsonl:2: .*--max-input-tokens"):
        train(base, TASK, rows, dev, TrainConfig(steps=1, num_virtual_tokens=4), tmp_path, show_progress=False)
    assert not any(tmp_path.iterdir())


def test_a_tied_dev_metric_keeps_the_weights_with_the_lower_dev_loss(tiny_models, tmp_path, monkeypatch):
    """A saturated dev set (every evaluation at 100%) must not pin the best prompt to the first evaluation."""
    import softprompt.train as train_module

    base = tiny_models("llama")
    rows, dev = setup(base)
    scripted = iter([(0.5, 1.0), (1.0, 0.5), (1.0, 0.3), (1.0, 0.4), (1.0, 0.3)])
    monkeypatch.setattr(
        train_module, "evaluate_sharded", lambda *a, **k: dict(zip(("accuracy", "loss"), next(scripted)), n=12)
    )
    result = run(base, tmp_path, config(steps=5, eval_every=1, checkpoint_every=1), rows, dev)
    assert result.best_step == 3 and result.best_metric == 1.0
    state = load_checkpoint(tmp_path / "checkpoint").values["state"]
    assert (state["best_step"], state["best_loss"]) == (3, 0.3)  # a resumed run goes on comparing with it
    dev_lines = [r for r in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines()) if "dev_loss" in r]
    assert [r["dev_loss"] for r in dev_lines] == [1.0, 0.5, 0.3, 0.4, 0.3]
    saved = SoftPrompt.load(tmp_path, base)
    assert torch.equal(saved.embeddings, load_checkpoint(tmp_path / "checkpoint").tensors["best_prompt"])


def test_resume_refuses_another_precision_of_the_model(tiny_models, tmp_path):
    from softprompt.models import quantize_base
    from softprompt.testing import tiny_base

    base = tiny_models("llama")
    rows, dev = setup(base)
    run(base, tmp_path, config(steps=2), rows, dev)
    with pytest.raises(SoftPromptError, match="trained on none weights; resume with --quantize none"):
        run(quantize_base(tiny_base("llama"), "int8"), tmp_path, config(steps=2), rows, dev, resume=True)
