"""Limits in tokens, per text and per request, checked before the request is queued."""

from __future__ import annotations

import httpx
import pytest

from .conftest import fill_prompts, serving


@pytest.fixture(scope="module")
def client(base, tmp_path_factory):
    folder = fill_prompts(base, tmp_path_factory.mktemp("prompts"))
    # The tiny tokenizer is byte-level: an ASCII text has as many tokens as characters.
    limits = dict(max_input_tokens=20, max_request_tokens=50, max_input_chars=1000)
    with serving(base, folder, **limits) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        c.metrics = lambda: c.get("/metrics").text
        yield c


def test_a_text_over_the_token_limit_gets_413(client):
    reply = client.post("/v1/classify", json={"prompt": "sent", "inputs": ["ok", "x" * 21]})
    assert reply.status_code == 413
    assert reply.json()["error"]["message"] == "inputs[1] has 21 tokens; at most 20 (--max-input-tokens)"
    assert client.post("/v1/classify", json={"prompt": "sent", "inputs": ["x" * 20]}).status_code == 200


def test_a_request_over_its_token_budget_gets_413_before_reaching_the_model(client):
    assert client.post("/v1/classify", json={"prompt": "sent", "inputs": ["x" * 20] * 2}).status_code == 200
    before = [line for line in client.metrics().splitlines() if line.startswith("softprompt_batch_size_count")]
    reply = client.post("/v1/classify", json={"prompt": "sent", "inputs": ["x" * 20] * 3})  # 60 > 50
    assert reply.status_code == 413 and "needs 60 tokens" in reply.json()["error"]["message"]
    after = [line for line in client.metrics().splitlines() if line.startswith("softprompt_batch_size_count")]
    assert after == before  # no model call was made for it


def test_a_completion_counts_the_tokens_it_may_generate(client):
    request = {"model": "gen", "prompt": ["x" * 10, "y" * 10], "max_tokens": 16, "temperature": 0}
    reply = client.post("/v1/completions", json=request)  # 20 in + 2 x 16 out = 52 > 50
    assert reply.status_code == 413
    assert "needs 52 tokens (20 in 'prompt' + 16 new tokens x 2 texts)" in reply.json()["error"]["message"]
    assert client.post("/v1/completions", json={**request, "max_tokens": 15}).status_code == 200
    assert client.post("/v1/completions", json={**request, "stream": True, "max_tokens": 16}).status_code == 413
