"""GPU check: the trainer, inference and the server on CUDA with bf16 weights and fp32 prompts, with figures.

    python3 benchmarks/gpu_check.py --model FOLDER [--device cuda] [--budget 420]

`benchmarks/gpu_check.sh run` calls this on a lent GPU machine (it builds FOLDER
first; see that script). Stages, each skipped with a line saying why when a
package or the time budget runs out:

1. environment: torch, CUDA, the GPU, and the packages each stage needs;
2. exactness on the device: on a tiny random Llama in fp32, the prompt gradient
   through the prefix cache equals the inline prompt's, and every recompute
   mode gives the same gradient; in bf16 the prompt and its gradient stay fp32;
3. training memory and step time per method and recompute mode
   (benchmarks/train_memory.py --device cuda, a fresh process per cell);
4. inference: classification inputs/s (rotten-tomatoes test texts, batch 64)
   and generation tokens/s (32 texts, 64 new tokens, batch 32);
5. serving: `softprompt serve --device cuda`, classify requests from 32
   concurrent clients: requests/s and p50/p99 latency.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NEEDS = {
    "exactness": ("torch", "transformers", "tokenizers"),
    "training": ("torch", "transformers", "peft", "safetensors"),
    "inference": ("torch", "transformers"),
    "serving": ("fastapi", "uvicorn", "httpx"),
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a model folder (gpu_check.sh builds SmolLM2-135M's shape)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--budget", type=float, default=420, help="seconds for all stages together")
    p.add_argument("--requests", type=int, default=1000, help="classify requests in the serving stage")
    return p.parse_args()


def say(line: str = "") -> None:
    print(line, flush=True)


def missing(stage: str) -> list[str]:
    return [name for name in NEEDS[stage] if importlib.util.find_spec(name) is None]


def environment(args) -> bool:
    import torch

    say(f"python {sys.version.split()[0]}, torch {torch.__version__} (CUDA {torch.version.cuda})")
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            say(
                "NEEDS: a torch build with CUDA that sees a GPU (python3 -c 'import torch; print(torch.cuda.is_available())')"
            )
            return False
        props = torch.cuda.get_device_properties(torch.device(args.device))
        say(f"GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB, bf16 {torch.cuda.is_bf16_supported()}")
    for stage in NEEDS:
        if gone := missing(stage):
            say(f"NEEDS for {stage}: {', '.join(gone)} (carry wheels: gpu_check.sh prepare)")
    return True


def exactness(args) -> None:
    import torch

    from softprompt.forward import next_token_logits, pad_batch, prompt_state
    from softprompt.recompute import MODES, recompute
    from softprompt.testing import tiny_base

    base = tiny_base("llama")
    base.model.to(args.device)
    batch = pad_batch([base.encode(t) for t in ("a fine film", "dull", "what a ride")], base.pad_token_id,
                      device=args.device)  # fmt: skip
    fed = [base.encode(" ok"), base.encode(" no"), []]

    def gradient(share_prefix: bool, mode: str) -> torch.Tensor:
        prompt = (torch.rand(5, base.hidden_size, generator=torch.Generator().manual_seed(0)) - 0.5).requires_grad_()
        with recompute(base, mode):
            logits = next_token_logits(base, prompt_state(base, prompt, share_prefix=share_prefix), batch, fed)
        logits.float().logsumexp(-1).mean().backward()
        assert prompt.grad.dtype == torch.float32
        return prompt.grad

    reference = gradient(False, "off")
    for share, mode in [(True, m) for m in MODES] + [(False, "full")]:
        error = ((gradient(share, mode) - reference).norm() / reference.norm()).item()
        say(
            f"fp32 prompt gradient, {'prefix cache' if share else 'inline'} / recompute {mode}: relative error {error:.1e}"
        )
    base.model.to(torch.bfloat16)
    bf16 = gradient(True, "selective")
    cosine = torch.nn.functional.cosine_similarity(bf16.flatten(), reference.flatten(), dim=0).item()
    say(f"bf16 weights: prompt gradient fp32, cosine to the fp32 gradient {cosine:.4f}")


def training(args, seconds: float) -> None:
    command = [
        sys.executable, str(HERE / "train_memory.py"), "--model", args.model, "--device", args.device,
        "--data", "rotten-tomatoes", "bbc-news", "--timed-steps", "3",
    ]  # fmt: skip
    proc = subprocess.Popen(command, start_new_session=True)  # its own group: a timeout stops its cells too
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        say(f"training: stopped after {seconds:.0f} s (the rows above are complete)")


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def inference(args) -> None:
    from softprompt.data import builtin_dataset
    from softprompt.infer import GenerationConfig, Predictor
    from softprompt.models import load_base_model
    from softprompt.prompts.meta import PromptMeta
    from softprompt.prompts.plain import SoftPrompt

    base = load_base_model(args.model, device=args.device)
    dataset = builtin_dataset("rotten-tomatoes")
    texts = [ex.input for ex in dataset.load().test]
    predictor = Predictor(base, max_batch_size=64)
    for t in (20, 100):
        meta = PromptMeta(task="classify", template=dataset.template, verbalizer=dict(dataset.verbalizer))
        predictor.add_prompt(f"t{t}", SoftPrompt.initialize(base, t, "vocab", seed=t, meta=meta))
    predictor.add_prompt("gen", SoftPrompt.initialize(base, 20, "vocab", seed=1, meta=PromptMeta(task="generate")))
    for t in (20, 100):
        predictor.classify([(f"t{t}", text) for text in texts[:64]])  # warm-up
        synchronize(args.device)
        start = time.perf_counter()
        predictor.classify([(f"t{t}", text) for text in texts])
        synchronize(args.device)
        elapsed = time.perf_counter() - start
        say(f"classify, T={t}, {len(texts)} texts, batch 64: {len(texts) / elapsed:,.0f} inputs/s ({base.dtype})")
    config = GenerationConfig(max_new_tokens=64)
    requests = [("gen", text) for text in texts[:32]]
    predictor.generate(requests[:4], GenerationConfig(max_new_tokens=4))  # warm-up
    start = time.perf_counter()
    out = predictor.generate(requests, config)
    elapsed = time.perf_counter() - start
    tokens = sum(len(base.encode(t)) for t in out if isinstance(t, str))
    say(f"generate, 32 texts x up to 64 new tokens, batch 32: {tokens / elapsed:,.0f} tokens/s ({tokens} tokens)")


def serving(args, seconds: float) -> None:
    import random

    import httpx

    sys.path.insert(0, str(HERE))
    import serve_load

    from softprompt.data import builtin_dataset
    from softprompt.models import load_base_model

    dataset = builtin_dataset("rotten-tomatoes")
    texts = [ex.input for ex in dataset.load().test]
    base = load_base_model(args.model)  # on CPU: only to write the prompt folders
    with tempfile.TemporaryDirectory(prefix="gpu-serve-") as tmp:
        names = serve_load.make_prompts(base, Path(tmp), 10, 20, dataset)
        rng = random.Random(0)
        work = [(rng.choice(names), rng.choice(texts)) for _ in range(args.requests)]
        options = ("--device", args.device, "--max-batch-size", "64", "--max-queue", "256")
        proc, url = serve_load.start_server(args.model, Path(tmp), *options)
        try:
            asyncio.run(serve_load.load(url, work[:64], 32, seconds))  # warm-up
            results, elapsed = asyncio.run(serve_load.load(url, work, 32, seconds))
            health = httpx.get(f"{url}/health").json()
        finally:
            serve_load.stop_server(proc)
    ok = [r[0] for r in results if r is not None and r[1] == 200]
    say(
        f"serve --device {args.device}: {len(ok)}/{len(work)} classify requests OK in {elapsed:.1f} s -> "
        f"{len(ok) / elapsed:,.1f} req/s, p50 {serve_load.percentile(ok, 0.5) * 1000:.0f} ms, "
        f"p99 {serve_load.percentile(ok, 0.99) * 1000:.0f} ms (32 concurrent; health {health.get('status')})"
    )


def main() -> int:
    args = parse_args()
    start = time.monotonic()
    left = lambda: args.budget - (time.monotonic() - start)  # noqa: E731
    say("== environment")
    if not environment(args):
        return 1
    stages = [
        ("exactness", lambda: exactness(args)),
        ("training", lambda: training(args, max(30.0, left() - 150))),
        ("inference", lambda: inference(args)),
        ("serving", lambda: serving(args, max(20.0, left() - 10))),
    ]
    for name, stage in stages:
        say(f"== {name} ({left():.0f} s left)")
        if gone := missing(name):
            say(f"skipped: needs {', '.join(gone)}")
        elif left() < 20:
            say("skipped: out of time")
        else:
            try:
                stage()
            except Exception as e:  # one stage's failure must not hide the others' figures
                say(f"FAILED: {type(e).__name__}: {e}")
    say(f"== done in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
