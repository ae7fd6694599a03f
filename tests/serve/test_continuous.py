"""Completions on the engine through HTTP: rows of concurrent requests share steps and each answer equals the
request run alone; rows leave when their client does; classification interleaves; the cache bound holds."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from softprompt.decode import GenerationConfig
from softprompt.prompts.meta import PromptMeta
from softprompt.prompts.prefix import PrefixPrompt

from .conftest import fill_prompts, serving, wait_until


class Gated:
    """The real predictor, but the first generation request waits at a gate while it joins the engine,
    so that requests sent meanwhile are queued together (deterministic sharing)."""

    def __init__(self, inner):
        self.inner, self.gate, self.entered = inner, threading.Event(), threading.Event()
        self.classified_at: list[int] = []

    def generation_input(self, *args, **kwargs):
        if not self.entered.is_set():
            self.entered.set()
            self.gate.wait(60)
        return self.inner.generation_input(*args, **kwargs)

    def classify(self, requests):
        self.classified_at.append(self.steps())
        return self.inner.classify(requests)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def count_steps(server, delay: float = 0.0) -> list[int]:
    """Count the engine's steps (each slowed by `delay` seconds, to make a generation last)."""
    engine = server.app.state.batcher.stepper
    steps, step = [0], engine.step

    def counted():
        steps[0] += 1
        time.sleep(delay)
        return step()

    engine.step = counted
    server.app.state.serve.predictor.steps = lambda: steps[0]
    return steps


def histogram(server, name: str) -> dict[str, float]:
    samples = {}
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith(name + "_bucket"):
            samples[line.split('le="')[1].split('"')[0]] = float(line.split()[-1])
    return samples


@pytest.fixture
def folder(base, tmp_path):
    fill_prompts(base, tmp_path)
    gen_meta = PromptMeta(task="generate", template="Q: {text}\nA:")
    PrefixPrompt.initialize(base, 3, "random", seed=3, meta=gen_meta).save(tmp_path / "deep-gen", base)
    return tmp_path


REQUESTS = [
    {"model": "gen", "prompt": "hello", "max_tokens": 9},
    {"model": "deep-gen", "prompt": "a longer question than the others", "max_tokens": 4},
    {"model": "tiny-llama", "prompt": "no prompt at all", "max_tokens": 12, "stream": True},
    {"model": "gen", "prompt": ["two", "texts"], "max_tokens": 6, "stop": ["e"], "stream": True},
    {"model": "deep-gen", "prompt": "sampled", "max_tokens": 8, "temperature": 0.9, "top_k": 20, "seed": 3},
]


def post(url: str, body: dict) -> list[str]:
    with httpx.Client(base_url=url, timeout=60) as c:
        if not body.get("stream"):
            reply = c.post("/v1/completions", json=body)
            assert reply.status_code == 200, reply.text
            return [choice["text"] for choice in reply.json()["choices"]]
        texts = [""] * (len(body["prompt"]) if isinstance(body["prompt"], list) else 1)
        with c.stream("POST", "/v1/completions", json=body) as reply:
            for line in reply.iter_lines():
                if line.startswith("data: {"):
                    for choice in json.loads(line[6:])["choices"]:
                        texts[choice["index"]] += choice["text"]
        return texts


def alone(server, body: dict) -> list[str]:
    name = None if body["model"] == "tiny-llama" else body["model"]
    config = {k: body[k] for k in ("temperature", "top_k", "seed", "stop") if k in body}
    config.setdefault("temperature", 1.0)
    prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
    return [server.predictor.generate([(name, p)], GenerationConfig(body["max_tokens"], **config))[0] for p in prompts]


@pytest.mark.parametrize("scheduler", ["continuous", "static"])
def test_concurrent_mixed_requests_share_steps_and_each_equals_itself_alone(base, folder, scheduler):
    greedy = [{**r, "temperature": r.get("temperature", 0)} for r in REQUESTS]
    with serving(base, folder, wrap=Gated, scheduler=scheduler, batch_wait_s=0) as srv:
        gated = srv.app.state.serve.predictor
        with ThreadPoolExecutor(len(greedy)) as pool:
            first = pool.submit(post, srv.url, greedy[0])
            assert gated.entered.wait(30)
            rest = [pool.submit(post, srv.url, body) for body in greedy[1:]]
            assert wait_until(lambda: httpx.get(f"{srv.url}/health").json()["queue_depth"] == len(rest))
            gated.gate.set()
            answers = [first.result(), *(f.result() for f in rest)]
        for body, got in zip(greedy, answers):
            assert got == alone(srv, body), body
        shared = histogram(srv, "softprompt_batch_requests")
    if scheduler == "continuous":  # every request joined the running batch: one step held them all
        assert shared["2.0"] < shared["+Inf"]
    else:  # the old policy: streams alone, the rest only with an equal request (here: none), one batch at a time
        assert shared["1.0"] == shared["+Inf"]


def test_a_stream_whose_client_leaves_frees_its_row_at_the_next_step(base, folder):
    with serving(base, folder, timeout_s=60) as srv:
        steps = count_steps(srv, delay=0.02)  # 200 tokens would take 4 s
        engine = srv.app.state.batcher.stepper
        request = {"model": "gen", "prompt": "once", "max_tokens": 200, "temperature": 0, "stream": True}
        with (
            httpx.Client(base_url=srv.url, timeout=60) as c,
            c.stream("POST", "/v1/completions", json=request) as reply,
        ):
            assert next(reply.iter_lines()).startswith("data: ")
        assert wait_until(lambda: not engine.busy)
        assert steps[0] < 150 and engine.cache.nbytes == 0  # it stopped early, and its memory is free


def test_a_timed_out_completion_frees_its_rows(base, folder):
    with serving(base, folder, timeout_s=0.5) as srv:
        count_steps(srv, delay=0.02)
        engine = srv.app.state.batcher.stepper
        request = {"model": "gen", "prompt": ["a", "b"], "max_tokens": 200, "temperature": 0}
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            reply = c.post("/v1/completions", json=request)
            assert reply.status_code == 503 and "timed out" in reply.json()["error"]["message"]
            assert wait_until(lambda: not engine.busy)
            assert c.post("/v1/completions", json={**request, "max_tokens": 2}).status_code == 200


def test_classification_is_answered_between_the_steps_of_a_long_generation(base, folder):
    with serving(base, folder, wrap=Gated, timeout_s=120) as srv:
        gated = srv.app.state.serve.predictor
        gated.entered.set()  # no gate here
        steps = count_steps(srv, delay=0.05)
        request = {"model": "gen", "prompt": "long", "max_tokens": 200, "temperature": 0, "stream": True}
        with (
            httpx.Client(base_url=srv.url, timeout=120) as c,
            c.stream("POST", "/v1/completions", json=request) as reply,
        ):
            lines = reply.iter_lines()
            assert next(lines).startswith("data: ")
            assert c.post("/v1/classify", json={"prompt": "sent", "inputs": ["x"]}).status_code == 200
            for _ in lines:  # the generation runs to its end
                pass
        assert gated.classified_at and gated.classified_at[0] < steps[0] // 2  # well before the generation ended


def test_requests_beyond_the_cache_wait_and_one_that_never_fits_gets_413(base, folder):
    with serving(base, folder, batch_wait_s=0) as probe:
        token_bytes = probe.app.state.batcher.stepper.cache.token_bytes
    # Room for one row of about 80 tokens: the second request waits for the first to finish.
    with serving(base, folder, kv_cache_bytes=80 * token_bytes, max_tokens=64) as srv:
        engine = srv.app.state.batcher.stepper
        most = []
        step = engine.step
        engine.step = lambda: (most.append(len(engine.rows)), step())[1]
        body = {"model": "gen", "prompt": "fits", "max_tokens": 40, "temperature": 0}
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda b: post(srv.url, b), [body, body]))
        assert answers[0] == answers[1] == alone(srv, body) and max(most) == 1
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            big = c.post("/v1/completions", json={**body, "prompt": "x" * 60, "max_tokens": 60})
        assert big.status_code == 413 and "--kv-cache-mb" in big.json()["error"]["message"]
        metrics = httpx.get(f"{srv.url}/metrics").text
        assert f"softprompt_engine_kv_cache_max_bytes {float(80 * token_bytes)}" in metrics
