"""Shared pieces of the serve tests: tiny prompts in a folder, and a server on 127.0.0.1 in a thread."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from softprompt.infer import Predictor
from softprompt.prompts.files import CONFIG_FILE, WEIGHTS_FILE
from softprompt.prompts.meta import PromptMeta
from softprompt.prompts.plain import SoftPrompt
from softprompt.serve.app import create_app
from softprompt.serve.config import ServeSettings
from softprompt.serve.registry import PromptRegistry
from softprompt.serve.server import RunningServer, start_in_thread

TEMPLATE = "Review: {text}\nSentiment:"


def classify_meta(multi_token: bool = False) -> PromptMeta:
    # The tiny tokenizer is byte-level: "p" is one token, " good" five (the multi-token label path).
    verbalizer = {"pos": " good", "neg": " bad"} if multi_token else {"pos": "p", "neg": "n"}
    return PromptMeta(task="classify", template=TEMPLATE, verbalizer=verbalizer)


def save_prompt(base, folder: Path, *, t: int = 4, seed: int = 0, task: str = "classify", multi_token=False) -> Path:
    meta = classify_meta(multi_token) if task == "classify" else PromptMeta(task="generate", template="Q: {text}\nA:")
    return SoftPrompt.initialize(base, t, "random", seed=seed, meta=meta).save(folder, base)


def _set_metadata(folder, metadata: str) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / WEIGHTS_FILE)
    save_file(tensors, str(folder / WEIGHTS_FILE), metadata={"format": "pt", "softprompt": metadata})


def _edit_config(folder, **changes) -> None:
    config = json.loads((folder / CONFIG_FILE).read_text())
    (folder / CONFIG_FILE).write_text(json.dumps({**config, **changes}))


def break_folder(base, folder, kind: str) -> None:
    """A prompt folder broken in one of the ways the issue found (each once aborted the whole scan)."""
    save_prompt(base, folder, t=4)
    if kind == "num_virtual_tokens":
        _edit_config(folder, num_virtual_tokens="x")
    elif kind == "metadata_list":
        _set_metadata(folder, "[1, 2]")
    elif kind == "template_int":
        _set_metadata(folder, json.dumps({"task": "classify", "template": 5, "verbalizer": {"pos": "p"}}))
    elif kind == "config_is_a_directory":
        (folder / CONFIG_FILE).unlink()
        (folder / CONFIG_FILE).mkdir()
    elif kind == "not_json":
        (folder / CONFIG_FILE).write_text("{not json")


BROKEN = {
    "num_virtual_tokens": "num_virtual_tokens should be a whole number",
    "metadata_list": "should be a JSON object, got list",
    "template_int": "field 'template' has the wrong type",
    "config_is_a_directory": "cannot be read",
    "not_json": "not valid JSON",
}


@pytest.fixture(scope="module")
def base(tiny_models):
    return tiny_models("llama")


def fill_prompts(base, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_prompt(base, folder / "sent", t=4, seed=1)
    save_prompt(base, folder / "sent-multi", t=6, seed=2, multi_token=True)
    save_prompt(base, folder / "gen", t=3, seed=3, task="generate")
    return folder


class SlowPredictor:
    """The real predictor, but every model call first sleeps: makes queues and timeouts observable."""

    def __init__(self, inner: Predictor, delay: float):
        self.inner, self.delay = inner, delay

    def classify(self, requests):
        time.sleep(self.delay)
        return self.inner.classify(requests)

    def generate(self, requests, config):
        time.sleep(self.delay)
        return self.inner.generate(requests, config)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@contextlib.contextmanager
def serving(base, folder: Path, *, delay: float = 0.0, wrap=None, **settings) -> Iterator[RunningServer]:
    """A real uvicorn server on 127.0.0.1:<free port> serving `folder`; stopped gracefully at the end.

    `wrap(predictor)` puts a look-alike around the real predictor (to hold, count or slow its calls)."""
    predictor = Predictor(base)
    wrapped = SlowPredictor(predictor, delay) if delay else wrap(predictor) if wrap else predictor
    registry = PromptRegistry(folder, wrapped, base)
    app = create_app(wrapped, registry, ServeSettings(**settings))
    server = start_in_thread(app)
    server.predictor, server.app = predictor, app
    try:
        yield server
    finally:
        server.stop()


def wait_until(check, timeout: float = 30.0) -> bool:
    """Poll `check` until it holds (True) or `timeout` passes (False): a condition, never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


# -- raw sockets: what an HTTP client library would not send -----------------------------


def connect(server: RunningServer, timeout: float = 30.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    return sock


def read_to_close(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or resets it)."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def read_response(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length (head and body may arrive in separate reads)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def status_of(response: bytes) -> int | None:
    """The status code of a raw HTTP response, or None when there is none."""
    parts = response.split(b" ", 2)
    return int(parts[1]) if response.startswith(b"HTTP/1.1 ") and len(parts) > 1 else None


def metric(server: RunningServer, name: str) -> float:
    """One unlabelled sample of /metrics."""
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")
