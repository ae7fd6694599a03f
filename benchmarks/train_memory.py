"""Training memory of each method, each in a fresh process, on the same batches.

    .venv/bin/python benchmarks/train_memory.py [--model smollm2-135m] [--data rotten-tomatoes bbc-news]
        [--methods prompt-tuning deep-prompt lora full-finetune] [--checkpointing off selective full]
        [--batch-size 16] [--threads 1] [--device cpu] [--timed-steps 2] [--explain]

Methods: prompt tuning (the trainer, `train.train`, T=20), deep prompts (the
trainer with `method="prefix"`, where this build has them), LoRA r=8 on PEFT's
default modules and full fine-tuning (compare's loop, `compare.finetune`).
Prompt tuning runs once per `--checkpointing` mode; the others as PEFT and
plain PyTorch train them.

Batches: the trainer's epoch-0 order over the data's training split (truncated
as `train` truncates it: bbc-news to 256 tokens) gives its first batch and its
widest batch; those 2 x batch-size rows are every method's data, batched by the
same `train.BatchPlan` (seed 0), and each method takes 3 optimiser steps, so the
widest batch runs at least once after the optimiser state exists. That batch
sets an epoch's peak.

Each (data, method) cell runs in a new Python process (loading the model is
not counted; LoRA wraps and fine-tuning trains the loaded model, no copy), and
runs its 3 steps twice, each time from a fresh optimiser:
- peak RSS growth (first pass): resident memory sampled every 5 ms over its
  level before training (what the operating system sees; it includes memory the
  C allocator keeps after torch freed it);
- peak allocator growth (second pass): tensor bytes torch allocated (CPU: summed
  from its profiler's allocation events; CUDA: the allocator's peak counter).
  tracemalloc does not apply: it sees Python's heap, not tensor memory;
- training state: trained parameters + gradients + optimiser state, exactly.
Then `--timed-steps` more steps on the widest batch without the profiler give
seconds per step (take times on an otherwise idle machine only).

`--explain` prints, for prompt tuning without recomputation, what autograd keeps
for the backward pass on the widest batch, grouped by tensor shape.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METHODS = ("prompt-tuning", "deep-prompt", "lora", "full-finetune")
CHECKPOINTING = ("off", "selective", "full")
STEPS = 3
LORA_R, LORA_ALPHA, LR = 8, 16, 1e-4


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--data", nargs="+", default=["rotten-tomatoes", "bbc-news"])
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--checkpointing", nargs="+", choices=CHECKPOINTING, default=list(CHECKPOINTING))
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--num-virtual-tokens", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto")
    p.add_argument("--timed-steps", type=int, default=2)
    p.add_argument("--explain", action="store_true")
    p.add_argument("--json", help="also write the rows here")
    p.add_argument("--cell", help=argparse.SUPPRESS)  # internal: run one cell and print its JSON
    return p.parse_args(argv)


# -- one cell, in its own process ------------------------------------------------------


def load(args):
    import torch

    from softprompt.models import load_base_model
    from softprompt.recipe import set_threads

    set_threads(args.threads)
    dtype = None if args.dtype == "auto" else getattr(torch, args.dtype)
    return load_base_model(args.model, device=args.device, dtype=dtype)


def chosen_rows(base, data_name: str, batch_size: int):
    """The trainer's first and widest epoch-0 batches over the training split, and the task."""
    from softprompt.recipe import RunSpec, prepare
    from softprompt.train import BatchPlan, encode_examples

    data = prepare(RunSpec(data=data_name))
    rows, _ = encode_examples(base, data.task, data.train, max_tokens=data.max_input_tokens)
    epoch = BatchPlan([len(r) for r in rows], batch_size, seed=0, bucket_batches=50).epoch(0)
    widest = max(epoch, key=lambda b: max(len(rows[i]) for i in b))
    picked = epoch[0] + (widest if widest is not epoch[0] else epoch[1])
    return data.task, [rows[i] for i in picked], [rows[i] for i in widest]


def prompt_runner(base, task, args, method: str, mode: str):
    """train.train() on the rows: the trainer's own step. Returns run(rows, steps) -> (seconds/step, state bytes)."""
    from softprompt.compare.prompt_tuning import optimizer_state_bytes
    from softprompt.train import TrainConfig, train

    settings = dict(
        num_virtual_tokens=args.num_virtual_tokens, batch_size=args.batch_size, seed=0, bucket_batches=50,
        init=task.default_init, gradient_checkpointing=mode, eval_every=10**6, checkpoint_every=10**6,
    )  # fmt: skip
    if method == "deep-prompt":
        settings["method"] = "prefix"

    def run(rows, steps):
        with tempfile.TemporaryDirectory() as out:
            result = train(base, task, rows, None, TrainConfig(**settings, steps=steps), out, show_progress=False)
            records = [json.loads(line) for line in Path(out, "metrics.jsonl").read_text().splitlines()]
        times = [args.batch_size / r["examples_per_s"] for r in records if "loss" in r]
        # fp32 weights and gradients of every trained tensor, and AdamW's state for them
        shapes = result.training_shapes
        state = 8 * sum(math.prod(shape) for shape in shapes) + optimizer_state_bytes("adamw", shapes, 0.01)
        return sum(times) / len(times), state

    return run


def finetune_runner(base, task, args, method: str):
    """compare's classification loop on LoRA (PEFT) or on every weight, trained in place."""
    from softprompt.compare.finetune import LoopConfig, train_classifier
    from softprompt.models import BaseModel

    if method == "lora":
        from peft import LoraConfig, TaskType, get_peft_model

        config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=0.0)
        model = BaseModel(get_peft_model(base.model, config).get_base_model(), base.tokenizer, base.name)
    else:
        for p in base.model.parameters():
            p.requires_grad_(True)
        model = base

    def run(rows, steps):
        loop = LoopConfig(steps=steps, batch_size=args.batch_size, lr=LR, seed=0)
        result = train_classifier(model, task, rows, loop, show_progress=False)
        return result.seconds / steps, result.state_bytes

    return run


def run_cell(args) -> dict:
    from softprompt.compare.measure import AllocatorPeak, PeakMemory

    data_name, method, mode = args.cell.split(":")
    base = load(args)
    task, rows, widest = chosen_rows(base, data_name, args.batch_size)
    if method in ("prompt-tuning", "deep-prompt"):
        runner = prompt_runner(base, task, args, method, mode)
    else:
        runner = finetune_runner(base, task, args, method)
    # Two passes over the same steps, each from a fresh optimiser: RSS without the profiler (its event
    # buffers would count), then the allocator's peak (the C allocator's leftovers from pass 1 do not count).
    with PeakMemory() as rss:
        _, state_bytes = runner(rows, STEPS)
    with AllocatorPeak(args.device) as allocated:
        runner(rows, STEPS)
    seconds = runner(widest, args.timed_steps)[0] if args.timed_steps else None
    return {
        "rss_growth": rss.peak_increase,
        "allocator_growth": allocated.peak_increase,
        "state_bytes": state_bytes,
        "seconds_per_step": seconds,
        "widest": max(len(r) for r in widest),
        "mean_tokens": sum(len(r) for r in rows) / len(rows),
    }


def kept_for_backward(frozen: set[int], forward) -> collections.Counter:
    """Bytes autograd keeps for the backward pass of `forward()` (then runs it), by (shape, dtype); weights not counted."""
    import torch

    kept, seen = collections.Counter(), set(frozen)

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            kept[(tuple(t.shape), str(t.dtype).replace("torch.", ""))] += storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = forward()
    loss.backward()
    return kept


def explain(args) -> None:
    """What autograd keeps for the backward pass of plain prompt tuning on the widest batch, by shape."""
    base = load(args)
    frozen = {p.untyped_storage().data_ptr() for p in base.model.parameters()}
    for data_name in args.data:
        explain_one(args, base, frozen, data_name)


def explain_one(args, base, frozen: set[int], data_name: str) -> None:
    from softprompt.forward import prompt_state
    from softprompt.prompts.plain import SoftPrompt

    task, _, widest = chosen_rows(base, data_name, args.batch_size)
    prompt = SoftPrompt.initialize(base, args.num_virtual_tokens, "vocab")
    batch, target = task.collate(base, widest, side="left")
    kept = kept_for_backward(frozen, lambda: task.loss(base, prompt_state(base, prompt.embeddings), batch, target))
    total = sum(kept.values())
    print(
        f"\n{data_name}: batch {tuple(batch.input_ids.shape)}, T={args.num_virtual_tokens}: "
        f"autograd keeps {total / 2**20:,.0f} MiB for backward (gradient checkpointing off)"
    )
    for (shape, dtype), n in kept.most_common(8):
        print(f"  {n / 2**20:8,.1f} MiB  {100 * n / total:4.1f}%  {dtype} {list(shape)}")


# -- the driver --------------------------------------------------------------------------


def cells(args):
    """data:method:recompute for every cell; only prompt tuning runs each --checkpointing mode."""
    own = {"prompt-tuning": args.checkpointing, "deep-prompt": ["selective"]}
    for data_name in args.data:
        for method in args.methods:
            for mode in own.get(method, ["-"]):
                yield f"{data_name}:{method}:{mode}"


def run_in_fresh_process(cell: str, argv: list[str]) -> dict:
    command = [sys.executable, __file__, *argv, "--cell", cell]
    done = subprocess.run(command, capture_output=True, text=True)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"failed": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(lines[-1])


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.cell:
        print(json.dumps(run_cell(args)))
        return
    if args.explain:
        explain(args)
        return
    print(f"{args.model} on {args.device}, batch {args.batch_size}, {STEPS} steps per cell, each in a fresh process")
    header = f"{'data':16} {'method':14} {'recompute':9} {'widest':>6} {'RSS growth':>11} {'allocator':>10} {'state':>9} {'s/step':>7}"
    print(header)
    results = []
    for cell in cells(args):
        started = time.perf_counter()
        row = {"cell": cell, **run_in_fresh_process(cell, argv)}
        results.append(row)
        data_name, method, mode = cell.split(":")
        if "failed" in row or "skipped" in row:
            print(f"{data_name:16} {method:14} {mode:9} {row.get('failed') or row.get('skipped')}")
            continue
        gib = lambda b: f"{b / 2**30:.2f} GiB"  # noqa: E731
        secs = f"{row['seconds_per_step']:.1f}" if row["seconds_per_step"] else "-"
        print(
            f"{data_name:16} {method:14} {mode:9} {row['widest']:6} {gib(row['rss_growth']):>11} "
            f"{gib(row['allocator_growth']):>10} {row['state_bytes'] / 2**20:7.1f}Mi {secs:>7}"
            f"   ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
