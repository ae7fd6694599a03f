"""The server on a quantised base model (int8 weights), through the real HTTP app on a loopback socket:
classification, and streamed completions of plain and deep prompts from the continuous-batching engine,
each equal to what the predictor answers on its own."""

from __future__ import annotations

import json

import httpx
import pytest

from softprompt.decode import GenerationConfig
from softprompt.models import quantize_base
from softprompt.prompts.meta import PromptMeta
from softprompt.prompts.prefix import PrefixPrompt
from softprompt.testing import tiny_base

from .conftest import fill_prompts, serving


@pytest.fixture(scope="module")
def quantised():
    return quantize_base(tiny_base("llama"), "int8")


@pytest.fixture(scope="module")
def server(quantised, tmp_path_factory):
    folder = fill_prompts(quantised, tmp_path_factory.mktemp("qprompts"))
    meta = PromptMeta(task="generate", template="Q: {text}\nA:")
    PrefixPrompt.initialize(quantised, 3, "random", seed=3, meta=meta).save(folder / "deep-gen", quantised)
    with serving(quantised, folder) as srv:
        yield srv


def streamed(client: httpx.Client, request: dict) -> list[str]:
    with client.stream("POST", "/v1/completions", json={**request, "stream": True}) as reply:
        assert reply.status_code == 200, reply.read()
        lines = [line for line in reply.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    texts = [""] * len(request["prompt"])
    for line in lines[:-1]:
        choice = json.loads(line.removeprefix("data: "))["choices"][0]
        texts[choice["index"]] += choice["text"]
    return texts


def test_models_report_the_quantisation(server):
    cards = httpx.get(f"{server.url}/v1/models").json()["data"]
    assert {c["id"] for c in cards} == {"tiny-llama", "sent", "sent-multi", "gen", "deep-gen"}
    assert {c["quantization"] for c in cards} == {"int8"}


def test_classify_on_int8_weights_matches_the_predictor(server):
    texts = ["a fine film", "dull and long"]
    body = httpx.post(f"{server.url}/v1/classify", json={"prompt": "sent", "inputs": texts}, timeout=30).json()
    direct = server.predictor.classify([("sent", t) for t in texts])
    assert [r["label"] for r in body["results"]] == [d.label for d in direct]
    for got, want in zip(body["results"], direct):
        assert got["probs"] == pytest.approx(want.probs, abs=1e-5)


@pytest.mark.parametrize("prompt", ["gen", "deep-gen"])
def test_streamed_completion_on_int8_weights_equals_the_predictor(server, prompt):
    texts = ["hello", "a longer question than that"]
    want = server.predictor.generate([(prompt, t) for t in texts], GenerationConfig(6))
    with httpx.Client(base_url=server.url, timeout=60) as client:
        request = {"model": prompt, "prompt": texts, "max_tokens": 6, "temperature": 0}
        assert streamed(client, request) == want
        assert any(want)  # the model said something
