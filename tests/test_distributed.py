"""Data-parallel training: sharding math in-process, then real 2-process runs under torchrun with gloo.

The torchrun tests start `torchrun --nproc_per_node 2 -m softprompt train` on a
tiny saved model (OMP_NUM_THREADS=1 per rank: the machine has 2 shared cores)
and compare against a 1-process run of the same command.
"""

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from softprompt.cli import main
from softprompt.data import Example
from softprompt.distributed import (
    FAIL_HOOK_ENV,
    Dist,
    LaunchEnv,
    RankFailure,
    evaluate_sharded,
    report_rank_failure,
    setup,
    shard_bounds,
)
from softprompt.errors import SoftPromptError
from softprompt.evaluate import encode_eval_set, evaluate, predict
from softprompt.models import load_base_model
from softprompt.prompts.methods import load_prompt, prompt_class
from softprompt.prompts.plain import SoftPrompt
from softprompt.prompts.prefix import PrefixPrompt
from softprompt.prompts.reparam import TrainablePrompt
from softprompt.tasks import ClassifyTask, GenerateTask
from softprompt.testing import save_tiny
from softprompt.train import TrainConfig, _State, _train_step, encode_examples, train

TORCHRUN = Path(sys.executable).with_name("torchrun")
CLASSIFY = ClassifyTask("Review: {text}\nSentiment:", {"pos": " y", "neg": " n"})


# -- in-process: the sharding and weighting math ------------------------------------------


@pytest.mark.parametrize("n,world", [(0, 2), (1, 2), (5, 2), (7, 3), (16, 4)])
def test_shards_cover_every_item_once_in_order(n, world):
    bounds = [shard_bounds(n, r, world) for r in range(world)]
    sizes = [b - a for a, b in bounds]
    assert [i for a, b in bounds for i in range(a, b)] == list(range(n))
    assert max(sizes) - min(sizes) <= 1


def test_launch_env_is_read_and_checked():
    assert LaunchEnv.from_environ({}) is None
    env = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "h", "MASTER_PORT": "1"}
    assert LaunchEnv.from_environ(env) == LaunchEnv(1, 2, 1)
    with pytest.raises(SoftPromptError, match="MASTER_ADDR"):
        LaunchEnv.from_environ({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})
    with pytest.raises(SoftPromptError, match="outside"):
        LaunchEnv.from_environ({**env, "RANK": "2"})


def test_single_process_is_a_no_op(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    dist = setup()
    assert dist == Dist() and dist.is_main and not dist.enabled
    rows = list(range(5))
    assert dist.shard(rows) == rows and dist.gather(["a"]) == ["a"] and dist.any(True)
    assert dist.shard_loss_terms(rows, lambda row: 1) == (rows, 1.0)
    with pytest.raises(SoftPromptError, match="torchrun"):
        setup(fsdp=True)


def test_a_second_sigterm_from_the_launcher_neither_cuts_the_unwinding_short_nor_kills_the_rank(tmp_path):
    """torchrun SIGTERMs the ranks left when one fails; one that lands while the first unwinds used to re-raise."""
    before = signal.getsignal(signal.SIGTERM)
    cleaned_up = []
    try:
        expected = r"rank 1/2\] stopped by the launcher .* No checkpoint was found"
        with pytest.raises(RankFailure, match=expected), report_rank_failure(Dist(rank=1, world_size=2), tmp_path):
            try:
                signal.raise_signal(signal.SIGTERM)
            finally:
                signal.raise_signal(signal.SIGTERM)
                cleaned_up.append(True)
        assert cleaned_up == [True]
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN  # the message is printed undisturbed
    finally:
        signal.signal(signal.SIGTERM, before)


class SimulatedRank(Dist):
    """One rank of a data-parallel run, without a process group: the test sums the ranks' gradients itself."""

    def reduce_step(self, params, loss_sum):
        return loss_sum


def data(n=10, seed=0):
    r = random.Random(seed)
    return [
        Example(
            ("good " if i % 2 else "bad ") * r.randint(1, 3) + "x" * r.randint(0, 6),
            "pos" if i % 2 else "neg",
            f"d:{i}",
        )
        for i in range(n)
    ]


class Plan:
    def __init__(self, batches):
        self.batches = batches

    def take(self, position):
        return self.batches[position[1]], (0, position[1] + 1)


# Every family, T5 and sliding windows included: the one forward scores a row the same whatever shares its batch.
@pytest.mark.parametrize(
    "kind,task",
    [("llama", "classify"), ("gpt2", "generate"), ("qwen2", "generate"), ("gemma3", "classify"), ("t5", "generate")],
)
@pytest.mark.parametrize("world", [2, 3])
def test_ranks_gradients_sum_to_the_single_process_gradient(tiny_models, kind, task, world):
    """Each rank's slice weighted by its share of loss terms (rows, or target tokens) sums to the whole batch."""
    base = tiny_models(kind)
    if task == "classify":
        the_task, examples = CLASSIFY, data()
    else:
        the_task = GenerateTask("Q: {text}\nA:")
        examples = [
            Example(f"say {w}", w * (i % 3 + 1), f"g:{i}") for i, w in enumerate(["yes", "no", "ok", "fine", "a"])
        ]
    rows, _ = encode_examples(base, the_task, examples)
    plan = [list(range(0, 3)), list(range(3, len(rows)))]  # uneven micro-batches, grad_accum=2
    cfg = TrainConfig(num_virtual_tokens=3, grad_accum=2, batch_size=4)

    def step(dist):
        prompt = TrainablePrompt(SoftPrompt.initialize(base, 3, "random", seed=1))
        loss, n = _train_step(base, the_task, rows, Plan(plan), _State(), prompt, cfg, dist)
        (weights,) = prompt.parameters()
        return loss, n, torch.zeros_like(weights) if weights.grad is None else weights.grad

    whole_loss, whole_n, whole_grad = step(Dist())
    parts = [step(SimulatedRank(rank=r, world_size=world)) for r in range(world)]
    assert all(n == whole_n for _, n, _ in parts)
    assert sum(loss for loss, _, _ in parts) == pytest.approx(whole_loss, rel=1e-5)
    torch.testing.assert_close(sum(g for _, _, g in parts), whole_grad, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("method,reparam", [("prefix", "none"), ("prefix", "mlp"), ("prompt", "residual")])
def test_ranks_gradients_sum_for_deep_and_reparameterised_prompts(tiny_models, method, reparam):
    """Every parameter of the reparam network (or the deep prompt itself) sums over ranks to the whole gradient."""
    base = tiny_models("qwen2")
    rows, _ = encode_examples(base, CLASSIFY, data())
    plan = [list(range(0, 4)), list(range(4, len(rows)))]
    cfg = TrainConfig(num_virtual_tokens=3, grad_accum=2, batch_size=6)

    def step(dist):
        prompt = TrainablePrompt(prompt_class(method).initialize(base, 3, "vocab", seed=1), reparam, seed=2)
        loss, _ = _train_step(base, CLASSIFY, rows, Plan(plan), _State(), prompt, cfg, dist)
        return loss, [p.grad for p in prompt.parameters()]

    whole_loss, whole_grads = step(Dist())
    parts = [step(SimulatedRank(rank=r, world_size=2)) for r in range(2)]
    assert sum(loss for loss, _ in parts) == pytest.approx(whole_loss, rel=1e-5)
    for i, whole in enumerate(whole_grads):
        torch.testing.assert_close(parts[0][1][i] + parts[1][1][i], whole, atol=1e-6, rtol=1e-4)


def test_sharded_eval_predictions_gather_in_order(tiny_models):
    """Simulated 2-rank eval: each rank predicts its slice; the concatenation scores like the whole set."""
    base = tiny_models("llama")
    dev = encode_eval_set(base, CLASSIFY, data(9, seed=2))
    prompt = SoftPrompt.initialize(base, 3, "random", seed=0).embeddings
    whole = predict(base, CLASSIFY, prompt, dev.rows)
    slices = [predict(base, CLASSIFY, prompt, Dist(rank=r, world_size=2).shard(dev.rows)) for r in range(2)]
    assert slices[0] + slices[1] == whole
    single = evaluate_sharded(base, CLASSIFY, prompt, dev.rows, batch_size=4, dist=Dist())
    assert single == evaluate(base, CLASSIFY, prompt, dev.rows, batch_size=4)


# -- real runs under torchrun (gloo) --------------------------------------------------------

TRAIN_FLAGS = [
    "--data", "data.jsonl", "--num-virtual-tokens", "4", "--steps", "6", "--batch-size", "5",
    "--optimizer", "adamw", "--lr", "0.05", "--eval-every", "3", "--checkpoint-every", "2", "--method", "prompt",
]  # fmt: skip


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A tiny model folder, a JSONL file, and the 1-process reference run of TRAIN_FLAGS."""
    root = tmp_path_factory.mktemp("dist")
    save_tiny("llama", root / "tiny")
    lines = [json.dumps({"text": ex.input, "label": ex.output}) for ex in data(40, seed=3)]
    (root / "data.jsonl").write_text("\n".join(lines) + "\n")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert main(["train", "--model", "tiny", *TRAIN_FLAGS, "--out", "one"]) == 0
    finally:
        os.chdir(cwd)
    return root


def torchrun(root: Path, *args: str, env: dict | None = None, nproc: int = 2) -> subprocess.CompletedProcess:
    # --standalone: a local rendezvous on a free port, so concurrent runs on this machine don't collide.
    command = [str(TORCHRUN), "--standalone", "--nproc_per_node", str(nproc), "-m", "softprompt", "train"]
    inherited = {k: v for k, v in os.environ.items() if k != FAIL_HOOK_ENV}
    child_env = {**inherited, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [*command, "--model", "tiny", *TRAIN_FLAGS, *args],
        cwd=root,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def checkpoint_prompts(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "checkpoint" / "state.safetensors"))


def assert_same_run(a: Path, b: Path) -> None:
    for name, tensor in checkpoint_prompts(a).items():
        torch.testing.assert_close(checkpoint_prompts(b)[name], tensor, atol=1e-5, rtol=1e-4, msg=name)
    torch.testing.assert_close(SoftPrompt.load(b).embeddings, SoftPrompt.load(a).embeddings, atol=1e-5, rtol=1e-4)


def records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_train_the_same_prompt_as_one(workdir):
    done = torchrun(workdir, "--out", "two")
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_run(workdir / "one", workdir / "two")
    # Only rank 0 wrote: each step's record appears once, in order; and one "finished" line was printed.
    steps = [r["step"] for r in records(workdir / "two") if "loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert done.stdout.count("finished:") == 1
    # Eval split across the ranks and gathered: the same dev figures over the whole dev set.
    dev = lambda folder: [(r["step"], r["dev_n"], r["dev_accuracy"]) for r in records(folder) if "dev_n" in r]
    assert dev(workdir / "two") == dev(workdir / "one") and dev(workdir / "two")[0][1] == 4


def test_dead_rank_stops_the_run_with_a_message_and_resume_finishes_it(workdir):
    died = torchrun(workdir, "--out", "cut", env={FAIL_HOOK_ENV: "1:4"})
    assert died.returncode != 0
    assert "rank 1 exits at step 4" in died.stderr
    assert "softprompt train: error: [rank 0/2]" in died.stderr
    assert "last checkpoint (step 2)" in died.stderr and "--resume" in died.stderr
    kept = json.loads((workdir / "cut" / "checkpoint" / "state.json").read_text())
    assert kept["state"]["step"] == 2
    # Resume on 2 processes with the base weights sharded (FSDP): the same prompt as the 1-process run.
    resumed = torchrun(workdir, "--out", "cut", "--resume", "--fsdp")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_run(workdir / "one", workdir / "cut")
    assert [r["step"] for r in records(workdir / "cut") if "loss" in r] == [1, 2, 3, 4, 5, 6]
    held, whole = resumed.stderr.split("FSDP: each rank holds ")[1].split(" transformer-block")[0].split(" of the ")
    assert int(held.replace(",", "")) * 2 == int(whole.replace(",", ""))


def test_two_fsdp_processes_train_a_deep_reparameterised_prompt_as_one(workdir, monkeypatch):
    """All-reduce over every parameter of the reparam network; a deep prompt runs no block, so FSDP is fine."""
    flags = ["--method", "prefix", "--reparam", "mlp", "--reparam-hidden", "8"]
    monkeypatch.chdir(workdir)
    assert main(["train", "--model", "tiny", *TRAIN_FLAGS, *flags, "--quiet", "--out", "deep-one"]) == 0
    done = torchrun(workdir, *flags, "--fsdp", "--out", "deep-two")
    assert done.returncode == 0, done.stderr[-3000:]
    for name, tensor in checkpoint_prompts(workdir / "deep-one").items():
        torch.testing.assert_close(checkpoint_prompts(workdir / "deep-two")[name], tensor, atol=1e-5, rtol=1e-4)
    assert any(name.startswith("encoder.mlp.") for name in checkpoint_prompts(workdir / "deep-two"))
    folded = [load_prompt(workdir / out) for out in ("deep-one", "deep-two")]
    assert all(isinstance(p, PrefixPrompt) for p in folded)
    torch.testing.assert_close(folded[1].prefix, folded[0].prefix, atol=1e-5, rtol=1e-4)


# -- models larger than one device: accelerate device maps (single process) -----------------


def test_device_map_with_disk_offload_trains_the_same_prompt(workdir, tmp_path):
    """A layer kept on disk (accelerate streams it in per forward) gives the same training as a whole model."""
    whole = load_base_model(str(workdir / "tiny"))
    names = ["model.embed_tokens", "model.layers.0", "model.norm", "model.rotary_emb", "lm_head"]
    placement = {**{name: "cpu" for name in names}, "model.layers.1": "disk"}
    split = load_base_model(str(workdir / "tiny"), device_map=placement, offload_folder=tmp_path / "offload")
    assert split.model.hf_device_map["model.layers.1"] == "disk"
    rows, _ = encode_examples(whole, CLASSIFY, data(12))
    cfg = TrainConfig(
        method="prompt", num_virtual_tokens=3, steps=3, batch_size=4, optimizer="adamw", lr=0.05, checkpoint_every=3
    )
    runs = [
        train(b, CLASSIFY, rows, None, cfg, tmp_path / out, show_progress=False)
        for b, out in ((whole, "a"), (split, "b"))
    ]
    torch.testing.assert_close(runs[1].prompt.embeddings, runs[0].prompt.embeddings)


def test_cli_device_map_auto_runs_single_process(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    assert main(["train", "--model", "tiny", *TRAIN_FLAGS, "--quiet", "--device-map", "auto", "--out", "mapped"]) == 0
    assert_same_run(workdir / "one", workdir / "mapped")
    assert main(["train", "--model", "tiny", *TRAIN_FLAGS, "--device-map", "{oops", "--out", "bad"]) == 2


def test_without_a_launcher_a_dead_peer_fails_the_collective_with_a_message(workdir):
    """Ranks started by hand (as on nodes whose launcher does not stop them): rank 0 sees the reset connection."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base_env = {k: v for k, v in os.environ.items() if k != FAIL_HOOK_ENV}
    base_env.update(OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2")
    base_env[FAIL_HOOK_ENV] = "1:4"
    command = [sys.executable, "-m", "softprompt", "train", "--model", "tiny", *TRAIN_FLAGS, "--quiet"]
    ranks = [
        subprocess.Popen(
            [*command, "--out", "by-hand"],
            cwd=workdir,
            env={**base_env, "RANK": str(r), "LOCAL_RANK": str(r)},
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(2)
    ]
    errors = [p.communicate(timeout=180)[1] for p in ranks]
    assert [p.returncode for p in ranks] == [2, 17]
    assert "another rank stopped or did not answer while summing the prompt gradient" in errors[0]
    assert "last checkpoint (step 2)" in errors[0] and "--resume" in errors[0]


def test_fsdp_refuses_a_quantised_model_in_one_sentence():
    from softprompt.distributed import Dist, refuse_quantized_fsdp, shard_base_model
    from softprompt.models import quantize_base
    from softprompt.testing import tiny_base

    refuse_quantized_fsdp("none")
    with pytest.raises(SoftPromptError, match=r"--fsdp cannot shard a quantised model \(--quantize int8\)"):
        refuse_quantized_fsdp("int8")
    with pytest.raises(SoftPromptError, match=r"\(--quantize int4\).*use --quantize none"):
        shard_base_model(quantize_base(tiny_base("llama"), "int4"), Dist())
