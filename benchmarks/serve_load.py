"""Load test of `softprompt serve` vs a naive one-request-at-a-time PEFT server, in one run.

    python benchmarks/serve_load.py [--requests 2000] [--concurrency 32] [--prompts 50]

Makes 50 classification prompts (SoftPrompt.initialize with different seeds,
rotten-tomatoes template and labels) for smollm2-135m, starts `softprompt serve`
on 127.0.0.1 in a subprocess, and sends classify requests (random prompt and
review text each, 32 in flight) until all are answered or --time-limit passes.
Prints requests/s, p50/p99 latency and errors.

Then, in the same run, the same requests offline: `Predictor.classify` in this
process (no HTTP, batches of --batch-size), the ceiling the server is
measured against (goal: the server reaches 80% of it). And the naive baseline:
what a server without batching or a prompt cache does per request: load the prompt folder into a PEFT PeftModel
(`load_adapter`), `set_adapter`, run one forward of prompt + text, read the
label-word logits. It runs the first --naive-requests of the same requests (a
fraction: it is slow) and its rate is that of those; labels are compared with
the server's answers for the same requests.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--requests", type=int, default=2000, help="classify requests to the server")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--prompts", type=int, default=50)
    p.add_argument("--num-virtual-tokens", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=32, help="the server's rows per model call")
    p.add_argument("--naive-requests", type=int, default=20, help="requests for the naive baseline (extrapolated)")
    p.add_argument("--time-limit", type=float, default=900, help="seconds for the server load phase")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def make_prompts(base, folder: Path, n: int, t: int, dataset) -> list[str]:
    from softprompt.prompts.meta import PromptMeta
    from softprompt.prompts.plain import SoftPrompt

    names = []
    for i in range(n):
        meta = PromptMeta(task="classify", template=dataset.template, verbalizer=dict(dataset.verbalizer))
        SoftPrompt.initialize(base, t, "vocab", seed=i, meta=meta).save(folder / f"p{i:02d}", base)
        names.append(f"p{i:02d}")
    return names


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, folder: Path, *options: str, threads: int | None = None) -> tuple[subprocess.Popen, str]:
    """`softprompt serve` on a free loopback port in a subprocess (with `options`); its URL once it answers."""
    import httpx

    port = free_port()
    command = [
        sys.executable, "-m", "softprompt", "serve", "--model", model, "--prompts", str(folder),
        "--host", "127.0.0.1", "--port", str(port), "--timeout", "600", "--log-level", "warning", *options,
    ]  # fmt: skip
    env = {**os.environ, "SOFTPROMPT_API_KEY": ""}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    proc = subprocess.Popen(command, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with status {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("the server did not start within 300 s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)


async def load(url: str, work: list[tuple[str, str]], concurrency: int, time_limit: float):
    import httpx

    results: list[tuple[float, int, str | None] | None] = [None] * len(work)
    next_index = 0
    start = time.perf_counter()

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal next_index
        while next_index < len(work) and time.perf_counter() - start < time_limit:
            i = next_index
            next_index += 1
            name, text = work[i]
            t0 = time.perf_counter()
            try:
                reply = await client.post("/v1/classify", json={"prompt": name, "inputs": [text]})
                label = reply.json()["results"][0]["label"] if reply.status_code == 200 else None
                results[i] = (time.perf_counter() - t0, reply.status_code, label)
            except (httpx.HTTPError, ValueError, KeyError) as e:
                results[i] = (time.perf_counter() - t0, 0, repr(e))
            done = sum(r is not None for r in results)
            if done % 100 == 0:
                elapsed = time.perf_counter() - start
                log(f"  {done}/{len(work)} answered, {done / elapsed:.1f} req/s, {elapsed:.0f} s")

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return results, time.perf_counter() - start


def naive_peft(base, folder: Path, work: list[tuple[str, str]], dataset) -> tuple[list[str], float, list[float]]:
    """One request at a time: load the adapter from disk, set it, forward prompt + text, pick a label."""
    from peft import PeftModel

    labels = list(dataset.verbalizer)
    label_ids = [base.encode(words)[0] for words in dataset.verbalizer.values()]
    model = PeftModel.from_pretrained(base.model, str(folder / work[0][0]), adapter_name="warmup")
    model.eval()
    answers, latencies = [], []
    start = time.perf_counter()
    for i, (name, text) in enumerate(work):
        t0 = time.perf_counter()
        adapter = f"r{i}"
        model.load_adapter(str(folder / name), adapter_name=adapter)
        model.set_adapter(adapter)
        ids = base.tokenizer(dataset.template.format(text=text), return_tensors="pt")
        with torch.no_grad():
            logits = model(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"]).logits[0, -1]
        answers.append(labels[int(logits[label_ids].argmax())])
        model.set_adapter("warmup")
        model.delete_adapter(adapter)
        latencies.append(time.perf_counter() - t0)
    return answers, time.perf_counter() - start, latencies


def offline_classify(base, folder: Path, names: list[str], work: list[tuple[str, str]], batch: int) -> float:
    """Seconds for Predictor.classify to answer `work` in arrival order, `batch` requests per call (mixed prompts)."""
    from softprompt.infer import Predictor
    from softprompt.prompts.methods import load_prompt

    predictor = Predictor(base, max_batch_size=batch)
    for name in names:
        predictor.add_prompt(name, load_prompt(folder / name, base))
    predictor.classify(work[:1])  # the first prompt state and any lazy set-up, as the server's warm-up
    start = time.perf_counter()
    for i in range(0, len(work), batch):
        predictor.classify(work[i : i + batch])
    return time.perf_counter() - start


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    args = parse_args()
    from softprompt.data import builtin_dataset
    from softprompt.models import load_base_model

    dataset = builtin_dataset("rotten-tomatoes")
    texts = [ex.input for ex in dataset.load().test]
    base = load_base_model(args.model)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        folder = Path(tmp)
        log(f"making {args.prompts} prompts (T={args.num_virtual_tokens}) in {folder} ...")
        names = make_prompts(base, folder, args.prompts, args.num_virtual_tokens, dataset)
        work = [(rng.choice(names), rng.choice(texts)) for _ in range(args.requests)]

        log("starting softprompt serve ...")
        options = ["--batch-size", str(args.batch_size), "--max-queue", str(max(4 * args.concurrency, 64))]
        proc, url = start_server(args.model, folder, *options)
        try:
            log(f"sending {len(work)} classify requests, {args.concurrency} concurrent ...")
            results, elapsed = asyncio.run(load(url, work, args.concurrency, args.time_limit))
            import httpx

            metrics = httpx.get(f"{url}/metrics").text
        finally:
            stop_server(proc)
        answered = [r for r in results if r is not None]
        ok = [r for r in answered if r[1] == 200]
        errors = len(answered) - len(ok)
        latencies = [r[0] for r in ok]
        rate = len(ok) / elapsed
        batch_count = _metric(metrics, "softprompt_batch_size_count")
        batch_sum = _metric(metrics, "softprompt_batch_size_sum")

        log(f"offline: the same {len(work)} requests through Predictor.classify in this process ...")
        offline_elapsed = offline_classify(base, folder, names, work, args.batch_size)
        offline_rate = len(work) / offline_elapsed

        n_naive = min(args.naive_requests, len(work))
        log(f"naive PEFT baseline: {n_naive} requests one at a time ...")
        naive_labels, naive_elapsed, naive_lat = naive_peft(base, folder, work[:n_naive], dataset)
        naive_rate = n_naive / naive_elapsed
        agree = [results[i][2] == naive_labels[i] for i in range(n_naive) if results[i] and results[i][1] == 200]

    print(f"model {args.model}, {args.prompts} prompts (T={args.num_virtual_tokens}), rotten-tomatoes test texts")
    print(
        f"softprompt serve: {len(ok)}/{len(work)} requests OK, errors {errors}, not sent (time limit) "
        f"{len(work) - len(answered)}; {elapsed:.1f} s -> {rate:.2f} req/s; latency p50 {percentile(latencies, 0.5):.3f} s "
        f"p99 {percentile(latencies, 0.99):.3f} s; {batch_count:.0f} model calls, mean batch {batch_sum / max(batch_count, 1):.1f} rows"
    )
    print(
        f"naive PEFT (load_adapter + set_adapter + forward per request, one at a time): {n_naive} requests in "
        f"{naive_elapsed:.1f} s -> {naive_rate:.2f} req/s (rate extrapolated to all {len(work)}: "
        f"{len(work) / naive_rate:.0f} s); latency p50 {statistics.median(naive_lat):.3f} s"
    )
    print(
        f"offline Predictor.classify (no HTTP, batches of {args.batch_size}): {len(work)} requests in "
        f"{offline_elapsed:.1f} s -> {offline_rate:.2f} req/s; the server reaches {rate / offline_rate:.0%} of it "
        f"(goal >= 80%)"
    )
    print(f"labels agree with the server on {sum(agree)}/{len(agree)} of the same requests")
    print(
        f"speed-up over the naive server: {rate / naive_rate:.1f}x requests/s (its p50 latency is far lower: one request at a time)"
    )
    return 0 if errors == 0 else 1


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


if __name__ == "__main__":
    sys.exit(main())
