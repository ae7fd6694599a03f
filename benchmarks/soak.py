"""Soak: `softprompt serve` under mixed traffic for --minutes while prompt folders come and go.

    python benchmarks/soak.py [--model qwen2.5-coder-1.5b] [--quantize int8] [--prompts 50] [--minutes 10]

Makes --prompts prompt folders for the model (a third each: classification
prompts with two label words, plain generation prompts, deep generation
prompts; T spread over 10..40), starts `softprompt serve` on 127.0.0.1 in a
subprocess, and for --minutes keeps --concurrency clients busy with a mix of
requests: /v1/classify (a review each), and streamed /v1/completions under a
plain or a deep prompt (--new-tokens each). Every --churn-s seconds a new prompt
folder is written into the served folder and an older extra one is removed, so
the server reloads while it answers (a request may then name a prompt that was
just removed: a 404 is counted, a 5xx never should be).

Every loop is bounded: each client stops at the deadline, each request has a
timeout, and the churn task stops with them. Reported: requests and their
status codes (5xx must be 0), requests/s, generated tokens/s, p50/p99
latency per kind (a stream's latency is its whole duration), the server's
RSS (VmRSS of its process) after the --warmup-s warm-up and at the end, and
the drift between them (goal: within 5%). Writes the figures as JSON
under benchmarks/results/soak/. Take the figures on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from serve_generate import one_stream
from serve_load import log, percentile, start_server, stop_server

RESULTS = Path(__file__).resolve().parent / "results" / "soak"
CLASSIFY_TEMPLATE = "Review: {text}\nSentiment:"
GENERATE_TEMPLATE = "Review: {text}\nA short reply:"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="qwen2.5-coder-1.5b")
    p.add_argument("--quantize", default="int8", help="the server's --quantize (none, int8, int4)")
    p.add_argument("--prompts", type=int, default=50)
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--warmup-s", type=float, default=60, help="RSS is compared from this point on")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=16)
    p.add_argument("--churn-s", type=float, default=15, help="seconds between adding and removing a prompt folder")
    p.add_argument("--request-timeout", type=float, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="JSON file for the figures (default: results/soak/)")
    return p.parse_args(argv)


def make_prompt(base, folder: Path, kind: str, index: int) -> str:
    """Write one prompt folder of `kind` (classify, plain, deep); return its name."""
    from softprompt.prompts.meta import PromptMeta
    from softprompt.prompts.plain import SoftPrompt
    from softprompt.prompts.prefix import PrefixPrompt

    t = 10 + (index * 7) % 31
    name = f"{kind}{index:03d}"
    if kind == "classify":
        meta = PromptMeta(
            task="classify", template=CLASSIFY_TEMPLATE, verbalizer={"pos": " positive", "neg": " negative"}
        )
        SoftPrompt.initialize(base, t, "vocab", seed=index, meta=meta).save(folder / name, base)
    else:
        meta = PromptMeta(task="generate", template=GENERATE_TEMPLATE)
        cls = SoftPrompt if kind == "plain" else PrefixPrompt
        cls.initialize(base, t, "vocab", seed=index, meta=meta).save(folder / name, base)
    return name


def server_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def soak(url: str, pid: int, names: dict[str, list[str]], texts: list[str], args, churn) -> dict:
    import httpx

    rng = random.Random(args.seed)
    deadline = time.monotonic() + args.minutes * 60
    warm_at = time.monotonic() + args.warmup_s
    records: list[tuple[str, float, int, int]] = []  # kind, seconds, status, tokens
    rss: dict[str, float] = {}
    errors: dict[str, list[str]] = {}  # status -> the first few messages, so a report says what each was

    def note_error(status: int, kind: str, prompt: str, message: str) -> None:
        kept = errors.setdefault(str(status), [])
        if len(kept) < 5:
            kept.append(f"{kind} {prompt}: {message}"[:400])

    async def one(client: httpx.AsyncClient) -> None:
        kind = rng.choice(["classify", "plain", "deep"])
        prompt, text = rng.choice(names[kind]), rng.choice(texts)
        start = time.perf_counter()
        try:
            if kind == "classify":
                reply = await client.post("/v1/classify", json={"prompt": prompt, "inputs": [text]})
                records.append((kind, time.perf_counter() - start, reply.status_code, 0))
                if reply.status_code != 200:
                    note_error(reply.status_code, kind, prompt, reply.text)
            else:
                body = {"model": prompt, "prompt": text, "max_tokens": args.new_tokens, "temperature": 0,
                        "stream": True, "stream_options": {"include_usage": True}}  # fmt: skip
                _, tokens, _ = await one_stream(client, body)
                records.append((kind, time.perf_counter() - start, 200, tokens))
        except RuntimeError as e:  # one_stream: a non-200 status or an error chunk
            status = int(str(e).split()[1].rstrip(":")) if str(e).startswith("status ") else 599
            records.append((kind, time.perf_counter() - start, status, 0))
            note_error(status, kind, prompt, str(e))
        except httpx.HTTPError as e:
            records.append((kind, time.perf_counter() - start, 0, 0))
            note_error(0, kind, prompt, repr(e))

    async def client_loop(client: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            await one(client)

    async def watch_rss() -> None:
        while time.monotonic() < deadline:
            if "warm" not in rss and time.monotonic() >= warm_at:
                rss["warm"] = server_rss_mb(pid)
            rss["peak"] = max(rss.get("peak", 0.0), server_rss_mb(pid))
            await asyncio.sleep(1.0)
        rss["end"] = server_rss_mb(pid)

    async def churn_loop() -> None:
        while time.monotonic() + args.churn_s < deadline:
            await asyncio.sleep(args.churn_s)
            await asyncio.to_thread(churn)

    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    timeout = httpx.Timeout(args.request_timeout)
    start = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(args.concurrency)), watch_rss(), churn_loop())
    elapsed = time.perf_counter() - start
    return {**summarize(records, rss, elapsed), "errors": errors}


def summarize(records, rss: dict, elapsed: float) -> dict:
    statuses: dict[str, int] = {}
    for _, _, status, _ in records:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    latency = {}
    for kind in ("classify", "plain", "deep"):
        times = [s for k, s, status, _ in records if k == kind and status == 200]
        if times:
            latency[kind] = {"n": len(times), "p50_s": percentile(times, 0.5), "p99_s": percentile(times, 0.99)}
    tokens = sum(r[3] for r in records)
    warm, end = rss.get("warm"), rss.get("end")
    return {
        "seconds": elapsed,
        "requests": len(records),
        "statuses": statuses,
        "errors_5xx": sum(n for s, n in statuses.items() if s.startswith("5")),
        "requests_per_s": len(records) / elapsed,
        "tokens_per_s": tokens / elapsed,
        "latency": latency,
        "rss_mb": rss,
        "rss_drift": (end - warm) / warm if warm and end else None,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    from softprompt.data import builtin_dataset
    from softprompt.models import load_base_model

    texts = [ex.input for ex in builtin_dataset("rotten-tomatoes").load().test][:500]
    base = load_base_model(args.model, quantize=args.quantize)
    kinds = ["classify", "plain", "deep"]
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        folder = Path(tmp) / "prompts"
        names: dict[str, list[str]] = {k: [] for k in kinds}
        for i in range(args.prompts):
            kind = kinds[i % 3]
            names[kind].append(make_prompt(base, folder, kind, i))
        staging, extra, counter = Path(tmp) / "staging", [], [args.prompts]

        def churn() -> None:
            """Add one prompt folder (written aside, then renamed in) and remove the oldest extra one."""
            kind = kinds[counter[0] % 3]
            name = make_prompt(base, staging, kind, counter[0])
            (staging / name).rename(folder / name)
            names[kind].append(name)
            extra.append((kind, name))
            counter[0] += 1
            if len(extra) > 3:
                old_kind, old = extra.pop(0)
                names[old_kind].remove(old)
                shutil.rmtree(folder / old)

        log(f"{args.prompts} prompts written; starting softprompt serve --quantize {args.quantize} ...")
        options = ["--max-new-tokens", str(args.new_tokens), "--poll-interval", "2"]
        options += ["--max-queue", str(4 * args.concurrency)]
        if args.quantize != "none":
            options += ["--quantize", args.quantize]
        proc, url = start_server(args.model, folder, *options)
        try:
            log(f"soaking for {args.minutes} min with {args.concurrency} clients ...")
            report = asyncio.run(soak(url, proc.pid, names, texts, args, churn))
        finally:
            stop_server(proc)
    report.update(model=args.model, quantize=args.quantize, prompts=args.prompts, concurrency=args.concurrency)
    out = args.out or RESULTS / f"{args.model.replace('/', '_').replace(':', '_')}-{args.quantize}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    drift_ok = report["rss_drift"] is None or abs(report["rss_drift"]) <= 0.05
    print(f"5xx: {report['errors_5xx']} (goal 0); RSS drift after warm-up: {report['rss_drift']} (goal within 5%)")
    return 0 if report["errors_5xx"] == 0 and drift_ok else 1


if __name__ == "__main__":
    sys.exit(main())
