"""The HTTP API on a real socket (uvicorn on 127.0.0.1, port 0) with a tiny model and prompts in tmp_path."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from softprompt.infer import GenerationConfig
from softprompt.prompts.meta import PromptMeta
from softprompt.testing import save_tiny

from .conftest import BROKEN, break_folder, classify_meta, fill_prompts, save_prompt, serving, wait_until


@pytest.fixture(scope="module")
def server(base, tmp_path_factory):
    with serving(base, fill_prompts(base, tmp_path_factory.mktemp("prompts")), max_inputs=8) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


# -- the endpoints -----------------------------------------------------------------------


def test_health_prompts_models_and_schema(client):
    assert client.get("/health").json() == {"status": "ok", "prompts": 3, "queue_depth": 0, "prompt_errors": {}}
    listed = {p["name"]: p for p in client.get("/v1/prompts").json()["data"]}
    assert sorted(listed) == ["gen", "sent", "sent-multi"]
    assert listed["sent"]["task"] == "classify" and listed["sent"]["labels"] == ["pos", "neg"]
    assert listed["sent"]["T"] == 4 and listed["sent"]["bytes"] > 0
    assert client.get("/v1/prompts/gen").json()["T"] == 3
    # The base model (no prompt) first, then the prompts, each naming the base as its parent.
    models = client.get("/v1/models").json()["data"]
    assert [m["id"] for m in models] == ["tiny-llama", "gen", "sent", "sent-multi"]
    assert models[0]["parent"] is None and {m["parent"] for m in models[1:]} == {"tiny-llama"}
    schema = client.get("/openapi.json").json()
    paths = {"/v1/classify", "/v1/completions", "/v1/chat/completions", "/v1/prompts", "/v1/prompts/{name}"}
    assert paths | {"/v1/models/{model_id}", "/health", "/metrics"} <= set(schema["paths"])


def test_classify_matches_the_predictor_and_mixed_concurrent_requests_agree(server, client):
    texts = ["a fine film", "dull and long", "ok"]
    body = client.post("/v1/classify", json={"prompt": "sent", "inputs": texts}).json()
    direct = server.predictor.classify([("sent", t) for t in texts])
    assert [r["label"] for r in body["results"]] == [d.label for d in direct]
    for got, want in zip(body["results"], direct):
        assert got["probs"] == pytest.approx(want.probs, abs=1e-5)
        assert sum(got["probs"].values()) == pytest.approx(1.0, abs=1e-5)
    # Many requests at once, naming different prompts: each answer equals the one-at-a-time answer.
    jobs = [("sent" if i % 2 else "sent-multi", f"text number {i}") for i in range(16)]
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda j: client.post("/v1/classify", json={"prompt": j[0], "inputs": [j[1]]}), jobs))
    for (name, text), reply in zip(jobs, replies):
        assert reply.status_code == 200
        want = server.predictor.classify([(name, text)])[0]
        assert reply.json()["results"][0]["probs"] == pytest.approx(want.probs, abs=1e-5)


def test_deep_prompts_are_served_beside_plain_ones_in_shared_batches(base, tmp_path):
    """Concurrent requests naming a plain prompt, a deep prompt (keys/values per layer) or none: as if alone."""
    from softprompt.prompts.prefix import PrefixPrompt

    folder = tmp_path / "prompts"
    save_prompt(base, folder / "plain", t=4, seed=1)
    PrefixPrompt.initialize(base, 7, "random", seed=2, meta=classify_meta()).save(folder / "deep", base)
    gen_meta = PromptMeta(task="generate", template="Q: {text}\nA:")
    PrefixPrompt.initialize(base, 3, "random", seed=3, meta=gen_meta).save(folder / "deep-gen", base)
    with serving(base, folder) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        listed = {p["name"]: p for p in c.get("/v1/prompts").json()["data"]}
        assert listed["deep"]["method"] == "prefix" and listed["plain"]["method"] == "prompt"
        assert listed["deep"]["T"] == 7
        jobs = [("deep" if i % 2 else "plain", f"text number {i}") for i in range(12)]
        with ThreadPoolExecutor(6) as pool:
            replies = list(pool.map(lambda j: c.post("/v1/classify", json={"prompt": j[0], "inputs": [j[1]]}), jobs))
        for (name, text), reply in zip(jobs, replies):
            want = srv.predictor.classify([(name, text)])[0]
            assert reply.json()["results"][0]["probs"] == pytest.approx(want.probs, abs=1e-5)
        texts = ["hello", "a longer question"]
        request = {"model": "deep-gen", "prompt": texts, "max_tokens": 5, "temperature": 0}
        want = srv.predictor.generate([("deep-gen", t) for t in texts], GenerationConfig(5))
        assert [ch["text"] for ch in c.post("/v1/completions", json=request).json()["choices"]] == want


def test_completion_matches_the_predictor_and_stream_gives_the_same_text(server, client):
    request = {"model": "gen", "prompt": ["hello", "a longer question"], "max_tokens": 6, "temperature": 0}
    body = client.post("/v1/completions", json=request).json()
    want = server.predictor.generate([("gen", "hello"), ("gen", "a longer question")], GenerationConfig(6))
    assert body["object"] == "text_completion" and body["model"] == "gen"
    assert [c["text"] for c in body["choices"]] == want
    assert [c["index"] for c in body["choices"]] == [0, 1]
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    assert body["choices"][0]["finish_reason"] in ("stop", "length")

    with client.stream("POST", "/v1/completions", json={**request, "stream": True}) as reply:
        assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in reply.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    texts, finished = ["", ""], [None, None]
    for line in lines[:-1]:
        choice = json.loads(line.removeprefix("data: "))["choices"][0]
        texts[choice["index"]] += choice["text"]
        finished[choice["index"]] = choice["finish_reason"] or finished[choice["index"]]
    assert texts == want and None not in finished


def test_single_string_prompt_and_sampling_with_seed_is_repeatable(client):
    request = {"model": "gen", "prompt": "hi", "max_tokens": 5, "temperature": 0.9, "top_p": 0.9, "seed": 7}
    first = client.post("/v1/completions", json=request).json()["choices"]
    assert len(first) == 1
    assert client.post("/v1/completions", json=request).json()["choices"][0]["text"] == first[0]["text"]


def test_metrics_report_requests_batches_queue_and_cache(client):
    client.post("/v1/classify", json={"prompt": "sent", "inputs": ["x"]})
    client.post("/v1/classify", json={"prompt": "nope", "inputs": ["x"]})
    text = client.get("/metrics").text
    assert 'softprompt_requests_total{endpoint="/v1/classify",status="200"}' in text
    assert 'softprompt_request_errors_total{endpoint="/v1/classify",status="404"}' in text
    assert 'softprompt_request_latency_seconds_bucket{endpoint="/v1/classify",le="+Inf"}' in text
    assert "softprompt_batch_size_count" in text and "softprompt_queue_depth 0" in text
    hits = [line for line in text.splitlines() if line.startswith("softprompt_prompt_cache_hits_total ")]
    assert hits and float(hits[0].split()[1]) > 0  # the prompt's keys/values were reused


# -- every bad request: 4xx with a message, and the server keeps working --------------

LONG = "x" * 9000
BAD_REQUESTS = [
    ("POST", "/v1/classify", {"prompt": "nope", "inputs": ["x"]}, 404, "no prompt named 'nope'"),
    ("POST", "/v1/classify", {"prompt": "../../etc/passwd", "inputs": ["x"]}, 404, "no prompt named"),
    ("POST", "/v1/classify", b'{"prompt": "sent", "inputs": [', 400, "not valid JSON"),
    ("POST", "/v1/classify", b"prompt=sent", 415, "Content-Type: application/json"),
    ("POST", "/v1/classify", ["sent"], 422, "valid dictionary"),
    ("POST", "/v1/classify", {"inputs": ["x"]}, 422, "prompt: Field required"),
    ("POST", "/v1/classify", {"prompt": "sent", "inputs": "x"}, 422, "inputs: Input should be a valid list"),
    ("POST", "/v1/classify", {"prompt": "sent", "inputs": [1, 2]}, 422, "inputs.0: Input should be a valid string"),
    ("POST", "/v1/classify", {"prompt": 3, "inputs": ["x"]}, 422, "prompt: Input should be a valid string"),
    ("POST", "/v1/classify", {"prompt": "sent", "inputs": []}, 422, "'inputs' is empty"),
    ("POST", "/v1/classify", {"prompt": "sent", "inputs": ["ok", "  "]}, 422, "inputs[1] is empty"),
    ("POST", "/v1/classify", {"prompt": "sent", "inputs": [LONG]}, 413, "9000 characters"),
    ("POST", "/v1/classify", {"prompt": "sent", "inputs": ["x"] * 9}, 413, "at most 8 per request"),
    ("POST", "/v1/classify", {"prompt": "sent", "inputs": ["y" * 300]}, 422, "too long"),
    ("POST", "/v1/classify", b'{"prompt": "sent", "inputs": ["\\ud800"]}', 422, "lone surrogate"),
    ("POST", "/v1/classify", {"prompt": "gen", "inputs": ["x"]}, 422, "not a classification prompt"),
    ("POST", "/v1/completions", {"model": "nope", "prompt": "x"}, 404, "no prompt named 'nope'"),
    ("POST", "/v1/completions", {"model": "gen", "prompt": ""}, 422, "prompt is empty"),
    ("POST", "/v1/completions", {"model": "gen", "prompt": []}, 422, "'prompt' is empty"),
    ("POST", "/v1/completions", {"model": "gen", "prompt": "x", "max_tokens": 0}, 422, "max_tokens must be"),
    ("POST", "/v1/completions", {"model": "gen", "prompt": "x", "max_tokens": 10**6}, 422, "max_tokens must be"),
    ("POST", "/v1/completions", {"model": "gen", "prompt": "x", "temperature": -1}, 422, "temperature"),
    ("POST", "/v1/completions", {"model": "gen", "prompt": "x", "top_p": 0}, 422, "top_p"),
    ("POST", "/v1/completions", {"model": "gen", "prompt": "x", "n": 17}, 422, "n: Input should be less than"),
    ("POST", "/v1/completions", {"model": "gen", "prompt": "x", "stop": [""]}, 422, "stop takes"),
    ("POST", "/v1/completions", {"model": "gen", "prompt": "x", "stop": list("abcde")}, 422, "stop takes"),
    ("POST", "/v1/completions", {"model": "gen", "prompt": "x", "stream": "yes please"}, 422, "stream"),
    ("POST", "/v1/completions", {"model": "gen", "prompt": "y" * 300, "stream": True}, 422, "too long"),
    ("GET", "/v1/prompts/nope", None, 404, "no prompt named 'nope'"),
    ("GET", "/v1/nothing", None, 404, "no endpoint GET /v1/nothing"),
    ("DELETE", "/v1/prompts", None, 405, "Method Not Allowed"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "message"), BAD_REQUESTS)
def test_bad_request_gets_a_4xx_json_error_that_says_what_is_wrong(client, method, path, body, status, message):
    if isinstance(body, bytes):
        content_type = "application/x-www-form-urlencoded" if body == b"prompt=sent" else "application/json"
        reply = client.request(method, path, content=body, headers={"content-type": content_type})
    else:
        reply = client.request(method, path, json=body)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert message in error["message"]
    assert error["code"] == status and error["type"]
    # ... and nothing was disturbed.
    assert client.post("/v1/classify", json={"prompt": "sent", "inputs": ["fine"]}).status_code == 200


def test_oversized_body_is_refused(client):
    reply = client.post("/v1/classify", content=b"x" * (2 << 20), headers={"content-type": "application/json"})
    assert reply.status_code == 413 and "larger than" in reply.json()["error"]["message"]


# -- hot reload, api key, queue limits, timeouts, shutdown -----------------------------


def test_prompts_added_replaced_and_removed_while_serving(base, tmp_path):
    with serving(base, tmp_path, poll_interval_s=0.05) as srv, httpx.Client(base_url=srv.url) as c:
        assert c.get("/v1/prompts").json()["data"] == []
        save_prompt(base, tmp_path / "new", t=4, seed=5)
        assert wait_until(lambda: c.get("/v1/prompts/new").status_code == 200)
        first = c.post("/v1/classify", json={"prompt": "new", "inputs": ["x"]}).json()["results"][0]["probs"]
        save_prompt(base, tmp_path / "new", t=9, seed=6)
        assert wait_until(lambda: c.get("/v1/prompts/new").json().get("T") == 9)
        second = c.post("/v1/classify", json={"prompt": "new", "inputs": ["x"]}).json()["results"][0]["probs"]
        assert second != first  # the new prompt's numbers, not a stale cache
        (tmp_path / "broken").mkdir()
        (tmp_path / "broken" / "adapter_config.json").write_text("{not json")
        (tmp_path / "broken" / "adapter_model.safetensors").write_bytes(b"")
        assert wait_until(lambda: "broken" in c.get("/health").json()["prompt_errors"])
        shutil.rmtree(tmp_path / "new")
        assert wait_until(lambda: c.get("/v1/prompts/new").status_code == 404)
        assert c.post("/v1/classify", json={"prompt": "new", "inputs": ["x"]}).status_code == 404


def test_broken_folders_at_start_up_and_in_a_rescan_leave_the_rest_serving(base, tmp_path):
    for kind in BROKEN:
        break_folder(base, tmp_path / kind, kind)
    save_prompt(base, tmp_path / "good", t=4)
    save_prompt(base, tmp_path / "old", t=4)
    with serving(base, tmp_path, poll_interval_s=0.05) as srv, httpx.Client(base_url=srv.url) as c:
        health = c.get("/health").json()
        assert health["prompts"] == 2 and sorted(health["prompt_errors"]) == sorted(BROKEN)
        assert str(tmp_path) not in json.dumps(health)  # names relative to the prompts folder only
        break_folder(base, tmp_path / "later", "template_int")
        save_prompt(base, tmp_path / "new", t=4)
        shutil.rmtree(tmp_path / "old")
        assert wait_until(lambda: c.get("/v1/prompts/new").status_code == 200)
        assert wait_until(lambda: c.get("/v1/prompts/old").status_code == 404)
        assert "later" in c.get("/health").json()["prompt_errors"]
        assert c.post("/v1/classify", json={"prompt": "good", "inputs": ["x"]}).status_code == 200


def test_api_key_is_required_on_the_api_but_not_on_health(base, tmp_path):
    fill_prompts(base, tmp_path)
    with serving(base, tmp_path, api_key="s3cret") as srv, httpx.Client(base_url=srv.url) as c:
        body = {"prompt": "sent", "inputs": ["x"]}
        missing = c.post("/v1/classify", json=body)
        assert missing.status_code == 401 and "missing API key" in missing.json()["error"]["message"]
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = c.post("/v1/classify", json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "wrong API key" in wrong.json()["error"]["message"]
        assert c.get("/v1/prompts").status_code == 401
        assert c.post("/v1/classify", json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/health").status_code == 200


def _post_all(url, bodies):
    with httpx.Client(base_url=url, timeout=30) as c, ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(lambda b: c.post("/v1/classify", json=b), bodies))


def test_full_queue_gets_429_and_the_rest_are_answered(base, tmp_path):
    fill_prompts(base, tmp_path)
    with serving(base, tmp_path, delay=0.5, max_queue=1, max_batch_size=1, batch_wait_s=0) as srv:
        replies = _post_all(srv.url, [{"prompt": "sent", "inputs": [f"t{i}"]} for i in range(5)])
        codes = sorted(r.status_code for r in replies)
        assert 429 in codes and 200 in codes and set(codes) <= {200, 429}
        busy = next(r for r in replies if r.status_code == 429)
        assert "busy" in busy.json()["error"]["message"]
        with httpx.Client(base_url=srv.url) as c:
            assert c.post("/v1/classify", json={"prompt": "sent", "inputs": ["after"]}).status_code == 200


def test_slow_request_gets_503_and_does_not_break_the_server(base, tmp_path):
    fill_prompts(base, tmp_path)
    with serving(base, tmp_path, delay=0.6, timeout_s=0.3) as srv, httpx.Client(base_url=srv.url) as c:
        reply = c.post("/v1/classify", json={"prompt": "sent", "inputs": ["x"]})
        assert reply.status_code == 503 and "timed out" in reply.json()["error"]["message"]
        assert c.get("/health").json()["status"] == "ok"


def test_graceful_shutdown_finishes_requests_in_flight(base, tmp_path):
    fill_prompts(base, tmp_path)
    with serving(base, tmp_path, delay=1.0) as srv:
        replies = []
        sender = threading.Thread(
            target=lambda: replies.extend(_post_all(srv.url, [{"prompt": "sent", "inputs": ["a"]}] * 3))
        )
        sender.start()
        assert wait_until(lambda: srv.server.server_state.total_requests >= 3)
        srv.stop()  # while the model is still busy
        sender.join(30)
        assert not srv.thread.is_alive()
    assert [r.status_code for r in replies] == [200, 200, 200]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_serves_and_stops_on_sigterm(base, tmp_path):
    model = save_tiny("llama", tmp_path / "model")
    prompts = fill_prompts(base, tmp_path / "prompts")
    break_folder(base, prompts / "broken", "config_is_a_directory")  # once made `serve` exit at start-up
    port = _free_port()
    env = {**os.environ, "SOFTPROMPT_API_KEY": "k"}
    command = [sys.executable, "-m", "softprompt", "serve", "--model", str(model), "--prompts", str(prompts)]
    proc = subprocess.Popen([*command, "--port", str(port), "--log-level", "warning"], env=env)
    try:
        url = f"http://127.0.0.1:{port}"

        def up():
            try:
                return httpx.get(f"{url}/health").status_code == 200
            except httpx.TransportError:
                return False

        assert wait_until(up, timeout=60)
        assert list(httpx.get(f"{url}/health").json()["prompt_errors"]) == ["broken"]
        reply = httpx.post(
            f"{url}/v1/classify", json={"prompt": "sent", "inputs": ["x"]}, headers={"Authorization": "Bearer k"}
        )
        assert reply.status_code == 200 and reply.json()["results"][0]["label"] in ("pos", "neg")
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal so the exit status reports it.
        assert proc.wait(30) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
