"""Memory and speed per model and precision: the table of issue 33 (load, cache, train, decode, serve).

    python benchmarks/scale.py [--models smollm2-135m qwen2.5-coder-0.5b qwen2.5-coder-1.5b synthetic:qwen2-7b]
                               [--precisions none int8 int4] [--steps 3] [--streams 32] [--fresh]

Each cell (model x precision) runs in its own subprocess, so its peak RSS is
its own: first a `build` subprocess fills the model cache (the time to convert
or quantise the source once), then the `cell` subprocess measures

- load time from the cache, and the cache's size on disk;
- a soft prompt's training step (T=20 virtual tokens, batch 16 rotten-tomatoes
  reviews, 2 label words; --batch-7b for the 7B-shaped model, stated in the
  row): seconds per step (the mean of --steps after one warm-up step) and the
  process's peak RSS;
- single-stream greedy decode (--new-tokens after a short prompt): tokens/s,
  against the bandwidth bound = measured memory bandwidth (a large tensor
  copy, bytes read + written per second) / the weight bytes read per token
  (every weight but the input embedding table, which is read one row a token);
- --streams concurrent streamed completions through `softprompt serve`
  (continuous batching) with that precision: generated tokens/s and the
  server process's peak RSS (the measuring process frees its model first).

fp32 is skipped where it would not fit (--max-fp32-params, default 2e9: the
7B-shaped model exists only quantised). Finished cells are kept in
benchmarks/results/scale/cells.json; a rerun does only the missing ones
(--fresh: all again). Take the figures on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "scale" / "cells.json"
MODELS = ["smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "synthetic:qwen2-7b"]
PRECISIONS = ["none", "int8", "int4"]
TEMPLATE = "Review: {text}\nSentiment:"
LABELS = (" positive", " negative")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=MODELS)
    p.add_argument("--precisions", nargs="+", default=PRECISIONS, choices=PRECISIONS)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--batch-7b", type=int, default=4, help="training batch for models above 5e9 parameters")
    p.add_argument("--virtual-tokens", type=int, default=20)
    p.add_argument("--steps", type=int, default=3, help="timed training steps (after one warm-up step)")
    p.add_argument("--new-tokens", type=int, default=32, help="tokens per decoded stream")
    p.add_argument(
        "--recompute", default="off", choices=["off", "selective", "full"],
        help="what the training step's backward keeps (TrainConfig.gradient_checkpointing; recompute.py). "
        "Activations, not weights, dominate a batch-16 step's memory unless they are recomputed",
    )  # fmt: skip
    p.add_argument("--streams", type=int, default=32, help="concurrent streams through serve (0: skip)")
    p.add_argument("--max-fp32-params", type=float, default=2e9)
    p.add_argument("--device", default="cpu", help="where the model runs (cuda on a GPU machine)")
    p.add_argument(
        "--tokenizer-7b", type=Path, default=None, help="a folder with the Qwen2.5 tokenizer for synthetic:qwen2-7b "
        "(default: borrowed from an installed Qwen2.5-Coder model)"
    )  # fmt: skip
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--fresh", action="store_true", help="measure every cell again")
    p.add_argument("--report", action="store_true", help="only print the table of the cells measured so far")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per subprocess")
    p.add_argument("--stage", choices=["build", "cell"], help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--precision", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def log(message: str) -> None:
    print(f"[scale] {message}", file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load(args):
    from softprompt.models import load_base_model

    if args.tokenizer_7b is not None:
        import dataclasses

        from transformers import AutoTokenizer

        from softprompt import synthetic

        folder = str(args.tokenizer_7b)
        shape = synthetic.SYNTHETIC_MODELS["qwen2-7b"]
        synthetic.SYNTHETIC_MODELS["qwen2-7b"] = dataclasses.replace(
            shape, tokenizer=lambda: AutoTokenizer.from_pretrained(folder)
        )
    return load_base_model(args.model, quantize=args.precision, device=args.device)


def cache_path(model: str, precision: str) -> Path:
    """The cache folder a load of (model, precision) reads."""
    import torch

    from softprompt import models
    from softprompt.quant import Quantization

    if precision == "none":
        return Path(models._resolve_to_folder(model))
    from softprompt.models import source_of
    from softprompt.quantized_load import cache_folder

    return cache_folder(source_of(model), Quantization.parse(precision), torch.float32)


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def decode_bytes(model) -> tuple[int, int]:
    """(all weight bytes, bytes read per decoded token: all but the input embedding table unless tied)."""
    from softprompt.quant import weight_bytes

    embedding, head = model.get_input_embeddings(), model.get_output_embeddings()
    total, table = weight_bytes(model), weight_bytes(embedding)
    head_storages = {t.untyped_storage().data_ptr() for t in [*head.parameters(), *head.buffers()]}
    tied = any(t.untyped_storage().data_ptr() in head_storages for t in [*embedding.parameters(), *embedding.buffers()])
    return total, total - (0 if tied else table)


def sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def memory_bandwidth(device="cpu", mb: int = 512, repeats: int = 5) -> float:
    """Bytes per second of a large tensor copy (read + write), the best of `repeats`."""
    import torch

    a = torch.ones(mb * 2**18, device=device)  # mb MiB of fp32
    b = torch.empty_like(a)
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        b.copy_(a)
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * a.numel() * a.element_size() / best


def reviews(n: int) -> list[str]:
    from softprompt.data import builtin_dataset

    return [ex.input for ex in builtin_dataset("rotten-tomatoes").load().train[:n]]


def train_steps(base, batch: int, t: int, steps: int, recompute_mode: str = "off") -> float:
    """Seconds per soft-prompt training step (mean of `steps` after a warm-up)."""
    import torch

    from softprompt.forward import next_token_logits, pad_batch, prompt_state
    from softprompt.prompts.plain import SoftPrompt
    from softprompt.recompute import recompute

    prompt = SoftPrompt.initialize(base, t, "vocab", seed=0)
    weights = torch.nn.Parameter(prompt.embeddings.detach().clone().to(base.device))
    optimizer = torch.optim.Adam([weights], lr=0.01)
    texts = reviews(batch)
    encoded = [base.encode(TEMPLATE.format(text=x))[-120:] for x in texts]
    ids = pad_batch(encoded, base.pad_token_id, side="left", device=base.device)
    label_ids = torch.tensor([base.encode(w)[0] for w in LABELS], device=base.device)
    targets = (torch.arange(batch) % 2).to(base.device)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        with recompute(base, recompute_mode):
            logits = next_token_logits(base, prompt_state(base, weights), ids, token_ids=label_ids)
            loss = torch.nn.functional.cross_entropy(logits.float(), targets)
            optimizer.zero_grad()
            loss.backward()
        optimizer.step()
        sync(base.device)
        times.append(time.perf_counter() - start)
    return sum(times[1:]) / steps


def decode_tokens_per_s(base, new_tokens: int) -> float:
    import torch

    ids = torch.tensor([base.encode("def fibonacci(n):\n")], device=base.device)
    with torch.no_grad():
        base.model.generate(ids, max_new_tokens=2, do_sample=False)  # warm-up
        start = time.perf_counter()
        first = base.model.generate(ids, max_new_tokens=1, do_sample=False)
        prefill = time.perf_counter() - start
        start = time.perf_counter()
        base.model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
        elapsed = time.perf_counter() - start
    del first
    return (new_tokens - 1) / max(elapsed - prefill, 1e-9)


def serve_streams(model: str, precision: str, folder: Path, streams: int, new_tokens: int) -> dict:
    """Generated tokens/s of `streams` concurrent streamed completions through `softprompt serve` of the
    prompts in `folder`, and the server's peak RSS (its own process: the model it loaded, the engine's
    caches and the requests in flight)."""
    from serve_generate import run_mode
    from serve_load import start_server, stop_server

    texts = reviews(streams)
    bodies = [
        {"model": "g", "prompt": text, "max_tokens": new_tokens, "temperature": 0, "stream": True,
         "stream_options": {"include_usage": True}}
        for text in texts
    ]  # fmt: skip
    options = ["--batch-size", str(streams), "--max-new-tokens", str(new_tokens), "--max-queue", str(2 * streams)]
    options += ["--timeout", "3600"]  # a 7B model's 32 prefills take minutes on 2 cores
    if precision != "none":
        options += ["--quantize", precision]
    row: dict = {"serve_streams": streams}
    try:
        proc, url = start_server(model, folder, *options)
    except SystemExit as e:  # it did not start
        return {**row, "serve_error": str(e)}
    try:
        elapsed, results = asyncio.run(run_mode(url, bodies, streams))
        tokens = sum(r[1] for r in results)
        row.update(serve_tokens=tokens, serve_tokens_per_s=tokens / elapsed)
    except (SystemExit, RuntimeError, OSError) as e:
        row["serve_error"] = str(e)
    finally:
        row["serve_peak_rss_mb"] = process_peak_rss_mb(proc.pid)  # what it took, answered or not
        stop_server(proc)
    return row


def write_serve_prompt(base, folder: Path) -> None:
    """The prompt `serve_streams` asks for: a plain prompt of 20 vectors for text generation, as "g"."""
    from softprompt.prompts.meta import PromptMeta
    from softprompt.prompts.plain import SoftPrompt

    meta = PromptMeta(task="generate", template="Review: {text}\nA short reply:")
    SoftPrompt.initialize(base, 20, "vocab", seed=0, meta=meta).save(folder / "g", base)


def process_peak_rss_mb(pid: int) -> float | None:
    """Another process's peak RSS (Linux's VmHWM); None where /proc does not say."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def preload() -> None:
    """Import what a load imports, so that load times are the loads' own."""
    import transformers  # noqa: F401
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer  # noqa: F401

    import softprompt.models  # noqa: F401
    import softprompt.quantized_load  # noqa: F401


def build(args) -> dict:
    preload()

    start = time.perf_counter()
    load(args)
    return {"build_s": time.perf_counter() - start, "build_peak_rss_mb": peak_rss_mb()}


def cell(args) -> dict:
    import torch

    from softprompt.allocator import return_freed_memory

    preload()
    start = time.perf_counter()
    base = load(args)
    row: dict = {"load_s": time.perf_counter() - start, "load_peak_rss_mb": peak_rss_mb()}
    row["cache_bytes"] = folder_bytes(cache_path(args.model, args.precision))
    total, per_token = decode_bytes(base.model)
    row.update(weight_bytes=total, weight_bytes_per_token=per_token)
    from softprompt.weight_stream import meta_model

    params = sum(p.numel() for p in meta_model(base.config).parameters())
    row["params"] = params
    batch = args.batch_7b if params > 5e9 else args.batch
    row.update(train_batch=batch, train_virtual_tokens=args.virtual_tokens, train_recompute=args.recompute)
    row["train_step_s"] = train_steps(base, batch, args.virtual_tokens, args.steps, args.recompute)
    row["train_peak_rss_mb"] = peak_rss_mb()
    if base.device.type == "cuda":
        row["train_peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    row["decode_tokens_per_s"] = decode_tokens_per_s(base, args.new_tokens)
    row["bandwidth_gb_s"] = memory_bandwidth(base.device) / 1e9
    row["decode_bound_tokens_per_s"] = row["bandwidth_gb_s"] * 1e9 / per_token
    row["decode_of_bound"] = row["decode_tokens_per_s"] / row["decode_bound_tokens_per_s"]
    if args.streams:
        with tempfile.TemporaryDirectory(prefix="scale-serve-") as tmp:
            write_serve_prompt(base, Path(tmp))
            # The server loads its own copy: this one goes first, so the two are never held at once.
            del base
            gc.collect()
            return_freed_memory()
            row.update(serve_streams(args.model, args.precision, Path(tmp), args.streams, args.new_tokens))
    return row


def run_stage(args, stage: str, model: str, precision: str) -> dict:
    command = [sys.executable, __file__, "--stage", stage, "--model", model, "--precision", precision]
    command += ["--batch", str(args.batch), "--batch-7b", str(args.batch_7b), "--steps", str(args.steps)]
    command += ["--virtual-tokens", str(args.virtual_tokens), "--new-tokens", str(args.new_tokens)]
    command += ["--streams", str(args.streams), "--device", args.device, "--recompute", args.recompute]
    if args.tokenizer_7b is not None:
        command += ["--tokenizer-7b", str(args.tokenizer_7b)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"{stage}: over {args.timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"error": f"{stage}: exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}"}
    return json.loads(lines[-1])


def table(cells: dict) -> str:
    head = (
        f"{'model':<20} {'prec':<5} {'load s':>7} {'cache MB':>9} {'batch':>5} {'train RSS MB':>12} {'s/step':>7} "
        f"{'decode t/s':>10} {'bound t/s':>9} {'of bound':>8} {'serve t/s':>9} {'serve RSS MB':>12}"
    )
    lines = [head]
    for key, row in cells.items():
        model, precision = key.split("|")
        if "error" in row:
            lines.append(f"{model:<20} {precision:<5} {row['error']}")
            continue
        lines.append(
            f"{model:<20} {precision:<5} {row['load_s']:>7.1f} {row['cache_bytes'] / 1e6:>9.0f} {row['train_batch']:>5} "
            f"{row['train_peak_rss_mb']:>12.0f} {row['train_step_s']:>7.2f} {row['decode_tokens_per_s']:>10.2f} "
            f"{row['decode_bound_tokens_per_s']:>9.2f} {row['decode_of_bound']:>8.0%} "
            f"{row.get('serve_tokens_per_s', float('nan')):>9.2f} {row.get('serve_peak_rss_mb') or float('nan'):>12.0f}"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.stage:
        print(json.dumps((build if args.stage == "build" else cell)(args)), flush=True)
        return 0
    cells = {} if args.fresh or not args.results.is_file() else json.loads(args.results.read_text())
    if args.report:
        print(table(cells))
        return 0
    from softprompt.fileio import write_json_atomic

    for model in args.models:
        for precision in args.precisions:
            key = f"{model}|{precision}"
            if key in cells and "error" not in cells[key]:
                continue
            if precision == "none" and (model.startswith("synthetic:") or _too_big_for_fp32(model, args)):
                continue
            log(f"{key}: building the cache ...")
            row = run_stage(args, "build", model, precision)
            if "error" not in row:
                log(f"{key}: measuring ...")
                row = {**row, **run_stage(args, "cell", model, precision)}
            row["machine"] = {"cpus": os.cpu_count(), "threads": os.environ.get("OMP_NUM_THREADS")}
            cells[key] = row
            write_json_atomic(args.results, cells)
            log(f"{key}: {json.dumps(row)}")
    print(table({k: cells[k] for k in cells if k.split("|")[0] in args.models}))
    return 0


def _too_big_for_fp32(model: str, args) -> bool:
    sizes = {"qwen2.5-coder-1.5b": 1.54e9, "qwen2.5-coder-0.5b": 0.49e9, "smollm2-135m": 0.135e9}
    return sizes.get(model, 0) > args.max_fp32_params


if __name__ == "__main__":
    sys.exit(main())
