"""Data-parallel scaling: training examples/s with 1 and 2 processes, and the cost of the prompt all-reduce.

    .venv/bin/python benchmarks/ddp_scaling.py [--model smollm2-135m] [--procs 1 2] [--steps 5] [--fsdp]

Each configuration is the real command, `torchrun --standalone --nproc_per_node N
-m softprompt train --data rotten-tomatoes ...`, with the same global batch and
the machine's cores split between the ranks (OMP_NUM_THREADS = cores / N), so
the comparison is "same hardware, more processes". Figures come from rank 0's
metrics.jsonl (global examples per step / step time); the first step (warm-up)
is dropped and the median of the rest is reported. The all-reduce line times
`distributed.Dist.reduce_step` alone (one all-reduce of the T x d gradient plus
the loss) over gloo with 2 processes. On a 2-core CPU little gain is expected:
both layouts use the same two cores; the point is that the communication is a
negligible share of a step.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

TORCHRUN = str(Path(sys.executable).with_name("torchrun"))


def run_training(
    model: str, procs: int, steps: int, batch_size: int, tokens: int, threads: int, fsdp: bool = False
) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="ddp-bench-") as tmp:
        command = [
            TORCHRUN, "--standalone", "--nproc_per_node", str(procs), "-m", "softprompt", "train",
            "--model", model, "--data", "rotten-tomatoes", "--steps", str(steps), "--batch-size", str(batch_size),
            "--num-virtual-tokens", str(tokens), "--max-dev-examples", "0", "--checkpoint-every", str(steps),
            "--quiet", "--out", tmp, *(["--fsdp"] if fsdp else []),
        ]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
        lines = (Path(tmp) / "metrics.jsonl").read_text().splitlines()
        return [r for r in map(json.loads, lines) if "loss" in r]


def allreduce_worker(tokens: int, dim: int, repeats: int) -> None:
    """Under torchrun: time Dist.reduce_step (the trainer's one collective per step)."""
    from softprompt import distributed

    dist = distributed.setup()
    prompt = torch.zeros(tokens, dim, requires_grad=True)
    prompt.grad = torch.randn(tokens, dim)
    dist.reduce_step(prompt, 1.0)  # warm-up: connections
    started = time.perf_counter()
    for _ in range(repeats):
        dist.reduce_step(prompt, 1.0)
    spent = (time.perf_counter() - started) / repeats
    if dist.is_main:
        print(json.dumps({"allreduce_ms": spent * 1000}))
    distributed.teardown(dist)


def time_allreduce(tokens: int, dim: int) -> float:
    command = [TORCHRUN, "--standalone", "--nproc_per_node", "2", __file__, "--allreduce-worker"]
    command += ["--num-virtual-tokens", str(tokens), "--dim", str(dim)]
    done = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"all-reduce timing failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["allreduce_ms"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=5, help="optimiser steps per run (the first is dropped)")
    parser.add_argument("--batch-size", type=int, default=16, help="global batch (split across the ranks)")
    parser.add_argument("--num-virtual-tokens", type=int, default=20)
    parser.add_argument("--dim", type=int, default=576, help="hidden size for the all-reduce timing (SmolLM2: 576)")
    parser.add_argument("--fsdp", action="store_true", help="also time 2 processes with --fsdp (sharded blocks)")
    parser.add_argument("--allreduce-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.allreduce_worker:
        allreduce_worker(args.num_virtual_tokens, args.dim, repeats=50)
        return

    cores = os.cpu_count() or 1
    print(f"model {args.model}, global batch {args.batch_size}, T={args.num_virtual_tokens}, {cores} cores")
    rates: dict[int, float] = {}
    for procs in args.procs:
        threads = max(1, cores // procs)
        records = run_training(args.model, procs, args.steps, args.batch_size, args.num_virtual_tokens, threads)
        timed = [r["examples_per_s"] for r in records[1:]] or [r["examples_per_s"] for r in records]
        rates[procs] = statistics.median(timed)
        step_s = args.batch_size / rates[procs]
        print(f"{procs} process(es) x {threads} thread(s): {rates[procs]:6.2f} examples/s ({step_s:.2f} s/step)")
    if args.fsdp:
        records = run_training(
            args.model, 2, args.steps, args.batch_size, args.num_virtual_tokens, max(1, cores // 2), fsdp=True
        )
        rate = statistics.median([r["examples_per_s"] for r in records[1:]] or [records[0]["examples_per_s"]])
        print(f"2 processes, --fsdp (blocks sharded, plain concat path): {rate:6.2f} examples/s")
    reduce_ms = time_allreduce(args.num_virtual_tokens, args.dim)
    print(f"all-reduce of the {args.num_virtual_tokens}x{args.dim} prompt gradient + loss, 2 processes (gloo): "
          f"{reduce_ms:.3f} ms per step")  # fmt: skip
    if 1 in rates and len(rates) > 1:
        for procs, rate in rates.items():
            if procs != 1:
                share = reduce_ms / 1000 / (args.batch_size / rate)
                print(f"speed-up {procs} vs 1 process: {rate / rates[1]:.2f}x; all-reduce = {share:.3%} of a step")


if __name__ == "__main__":
    main()
