"""Work nobody waits for any more stops: a timed-out request, a client that hung up (classification; the
generation engine's rows: test_continuous.py)."""

from __future__ import annotations

import json
import threading

import httpx

from .conftest import connect, fill_prompts, serving, wait_until


class HeldPredictor:
    """The real predictor, but each classify call is recorded and waits for `gate`."""

    def __init__(self, inner):
        self.inner = inner
        self.gate, self.entered = threading.Event(), threading.Event()
        self.calls: list[list] = []
        self.steps = 0

    def classify(self, requests):
        self.calls.append(list(requests))
        self.entered.set()
        self.gate.wait(60)
        return self.inner.classify(requests)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def held(server) -> HeldPredictor:
    return server.app.state.serve.predictor


def test_a_timed_out_request_stops_computing(base, tmp_path):
    fill_prompts(base, tmp_path)
    settings = dict(wrap=HeldPredictor, max_batch_size=1, timeout_s=0.5)
    with serving(base, tmp_path, **settings) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        reply = c.post("/v1/classify", json={"prompt": "sent", "inputs": ["a", "b", "c"]})  # 3 calls of 1 row
        assert reply.status_code == 503 and "timed out" in reply.json()["error"]["message"]
        held(srv).gate.set()  # the first call finishes now, long after the caller gave up
        assert c.post("/v1/classify", json={"prompt": "sent", "inputs": ["next"]}).status_code == 200
    # The timed-out request's other two rows were never computed: its call, then the next request's.
    assert [[text for _, text in call] for call in held(srv).calls] == [["a"], ["next"]]


def test_a_request_whose_client_hangs_up_stops_computing(base, tmp_path):
    fill_prompts(base, tmp_path)
    with serving(base, tmp_path, wrap=HeldPredictor, max_batch_size=1) as srv:
        body = json.dumps({"prompt": "sent", "inputs": ["a", "b", "c"]}).encode()
        with connect(srv) as sock:
            head = (
                "POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            )
            sock.sendall(head.encode() + body)
            assert held(srv).entered.wait(30)  # the model is on the request's first row
        # The socket is closed: the server notices, gives up the request (499 in the metrics) ...
        gone = 'softprompt_requests_total{endpoint="/v1/classify",status="499"} 1'
        assert wait_until(lambda: gone in httpx.get(f"{srv.url}/metrics").text)
        held(srv).gate.set()
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            assert c.post("/v1/classify", json={"prompt": "sent", "inputs": ["next"]}).status_code == 200
    # ... and the worker dropped its remaining rows.
    assert [[text for _, text in call] for call in held(srv).calls] == [["a"], ["next"]]
