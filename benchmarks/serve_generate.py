"""Streaming completions under load: one at a time vs static batching vs continuous batching, in one run.

    python benchmarks/serve_generate.py [--clients 32] [--prompts 10] [--new-tokens 64] [--threads N]

Makes --prompts generation prompts for the model with T spread evenly over
--t-min..--t-max virtual tokens (10..100), and --clients requests: each a
rotten-tomatoes review under a prompt (round robin), greedy, --new-tokens new
tokens, streamed (`stream: true`, usage in the last chunk). The same requests
then run three times, each against a fresh `softprompt serve` subprocess:

  (a) one request at a time (the next is sent when the previous has ended);
  (b) all at once, `--scheduler static`: the old policy (a stream runs alone,
      a batch runs to its end while new requests wait);
  (c) all at once, `--scheduler continuous`: requests join and leave the
      running batch at every decoding step.

For each: generated tokens/s over the whole run (the usage chunks' completion
tokens / wall time), and time to first token (request sent -> first non-empty
text) p50/p99. Greedy output does not depend on the schedule, so the three
runs must return the same texts: the script checks it. Goals (issue 16):
(c) >= 4x (a) and >= 1.5x (b) in tokens/s, and (c)'s p99 time to first token
below (b)'s. Take the figures on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from serve_load import log, percentile, start_server, stop_server

MODES = {
    "one at a time": ("continuous", 1),
    "static batching": ("static", None),
    "continuous batching": ("continuous", None),
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m", help="base model (a built-in name, a folder, a HF id)")
    p.add_argument("--clients", type=int, default=32, help="requests, all sent at once in (b) and (c)")
    p.add_argument("--prompts", type=int, default=10)
    p.add_argument("--t-min", type=int, default=10)
    p.add_argument("--t-max", type=int, default=100)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32, help="the server's rows per model call")
    p.add_argument("--step-tokens", type=int, default=256, help="the server's --step-tokens (continuous)")
    p.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for the server")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    return p.parse_args()


def make_prompts(base, folder: Path, args) -> list[str]:
    from softprompt.prompts.meta import PromptMeta
    from softprompt.prompts.plain import SoftPrompt

    meta = PromptMeta(task="generate", template="Review: {text}\nA short reply:")
    names = []
    for i in range(args.prompts):
        t = args.t_min + round(i * (args.t_max - args.t_min) / max(args.prompts - 1, 1))
        SoftPrompt.initialize(base, t, "vocab", seed=i, meta=meta).save(folder / f"g{i:02d}-T{t}", base)
        names.append(f"g{i:02d}-T{t}")
    return names


async def one_stream(client, body: dict) -> tuple[float | None, int, str]:
    """(time to first token, completion tokens, text) of one streamed completion."""
    start, first, tokens, text = time.perf_counter(), None, 0, ""
    async with client.stream("POST", "/v1/completions", json=body) as reply:
        if reply.status_code != 200:
            raise RuntimeError(f"status {reply.status_code}: {(await reply.aread())[:300]!r}")
        async for line in reply.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(chunk["error"]["message"])
            for choice in chunk["choices"]:
                if choice["text"] and first is None:
                    first = time.perf_counter() - start
                text += choice["text"]
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    return first, tokens, text


async def run_mode(url: str, bodies: list[dict], concurrency: int) -> tuple[float, list]:
    import httpx

    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=len(bodies))
    async with httpx.AsyncClient(base_url=url, timeout=3600, limits=limits) as client:
        await one_stream(client, {**bodies[0], "max_tokens": 2})  # warm-up: first prompt state, lazy set-up
        gate = asyncio.Semaphore(concurrency)

        async def limited(body):
            async with gate:
                return await one_stream(client, body)

        start = time.perf_counter()
        results = await asyncio.gather(*(limited(body) for body in bodies))
        return time.perf_counter() - start, results


def main() -> int:
    args = parse_args()
    from softprompt.data import builtin_dataset
    from softprompt.models import load_base_model

    texts = [ex.input for ex in builtin_dataset("rotten-tomatoes").load().test]
    base = load_base_model(args.model)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="serve-generate-") as tmp:
        folder = Path(tmp)
        names = make_prompts(base, folder, args)
        del base  # the servers load their own
        bodies = [
            {
                "model": names[i % len(names)], "prompt": texts[i], "max_tokens": args.new_tokens, "temperature": 0,
                "stream": True, "stream_options": {"include_usage": True},
            }
            for i in range(args.clients)
        ]  # fmt: skip
        for mode in args.modes:
            scheduler, concurrency = MODES[mode]
            log(f"{mode}: starting softprompt serve --scheduler {scheduler} ...")
            options = [
                "--scheduler", scheduler, "--batch-size", str(args.batch_size),
                "--step-tokens", str(max(args.step_tokens, args.batch_size)),
                "--max-new-tokens", str(args.new_tokens), "--max-queue", str(2 * args.clients),
            ]  # fmt: skip
            proc, url = start_server(args.model, folder, *options, threads=args.threads)
            try:
                log(f"{mode}: {len(bodies)} streamed completions, {concurrency or len(bodies)} at a time ...")
                rows[mode] = asyncio.run(run_mode(url, bodies, concurrency or len(bodies)))
            finally:
                stop_server(proc)
    print(
        f"model {args.model}; {args.clients} streamed completions of {args.new_tokens} tokens (greedy) over "
        f"{args.prompts} prompts (T={args.t_min}..{args.t_max}); rotten-tomatoes reviews"
    )
    print(f"{'mode':<22} {'tokens':>7} {'seconds':>8} {'tokens/s':>9} {'TTFT p50':>9} {'TTFT p99':>9}")
    figures = {}
    for mode, (elapsed, results) in rows.items():
        tokens = sum(r[1] for r in results)
        ttft = [r[0] for r in results if r[0] is not None] or [float("nan")]
        figures[mode] = (tokens / elapsed, percentile(ttft, 0.99))
        print(
            f"{mode:<22} {tokens:>7} {elapsed:>8.1f} {tokens / elapsed:>9.2f} "
            f"{percentile(ttft, 0.5):>8.2f}s {percentile(ttft, 0.99):>8.2f}s"
        )
    outputs = {mode: [r[2] for r in results] for mode, (_, results) in rows.items()}
    same = len({json.dumps(texts) for texts in outputs.values()}) == 1
    print(f"greedy texts identical across modes: {same}")
    if {"one at a time", "static batching", "continuous batching"} <= set(figures):
        one, static, cont = (figures[m] for m in ("one at a time", "static batching", "continuous batching"))
        print(f"continuous vs one at a time: {cont[0] / one[0]:.2f}x tokens/s (goal >= 4x)")
        print(f"continuous vs static: {cont[0] / static[0]:.2f}x tokens/s (goal >= 1.5x)")
        print(f"p99 time to first token: continuous {cont[1]:.2f} s vs static {static[1]:.2f} s (goal: below)")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
