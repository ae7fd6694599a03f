"""Shared pieces of the studio tests: a tiny model, a small labelled CSV, and a studio server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from softprompt.infer import Predictor
from softprompt.serve.config import ServeSettings
from softprompt.serve.registry import PromptRegistry
from softprompt.serve.server import RunningServer, start_in_thread
from softprompt.studio.app import create_studio_app
from softprompt.studio.guard import TOKEN_HEADER
from softprompt.studio.settings import StudioSettings
from softprompt.studio.storage import DataFolder

# Ends in a space so the answer words "p"/"n" are one byte-level token each (the fast, single-token path).
TEMPLATE = "Review: {text}\nSentiment: "
LABELS = "pos=p,neg=n"


def reviews_csv(path: Path, rows: int = 24) -> Path:
    """A small, learnable CSV: 'good' reviews are pos, 'bad' ones neg; text has a comma and quotes."""
    lines = ["text,label,source"]
    for i in range(rows):
        word, label = ("good", "pos") if i % 2 == 0 else ("bad", "neg")
        lines.append(f'"a {word} film, number {i}",{label},site{i % 3}')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def small_job(data: str, name: str = "reviews", **overrides) -> dict:
    spec = dict(
        name=name, data=data, template=TEMPLATE, labels=LABELS, text_column="text", label_column="label",
        num_virtual_tokens=4, steps=6, batch_size=4, eval_every=3, max_dev_examples=8, lr=0.3, method="prompt",
    )  # fmt: skip
    return {**spec, **overrides}


@pytest.fixture(scope="session")
def base(tiny_models):
    return tiny_models("llama")


@contextlib.contextmanager
def studio(base, data_dir: Path, limits: dict | None = None, **settings) -> Iterator[RunningServer]:
    """A real uvicorn server with the studio on 127.0.0.1:<free port>; stopped (jobs too) at the end.

    `limits` are StudioSettings fields; `server.headers` carry the page's token (what app.js sends).
    """
    folders = DataFolder(data_dir)
    predictor = Predictor(base)
    registry = PromptRegistry(folders.prompts, predictor, base)
    settings.setdefault("poll_interval_s", 0.2)
    app = create_studio_app(
        predictor,
        registry,
        base,
        data_dir,
        ServeSettings(**settings),
        StudioSettings(**{"max_upload_bytes": 1 << 20, **(limits or {})}),
    )
    server = start_in_thread(app)
    server.app = app
    server.headers = {TOKEN_HEADER: app.state.studio_token}
    try:
        yield server
    finally:
        server.stop()


def wait_until(check, timeout: float = 30.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {check}")


def client(server: RunningServer, headers: dict | None = None) -> httpx.Client:
    """An HTTP client to the studio that sends the token (and `headers`), as the page does."""
    return httpx.Client(base_url=server.url, timeout=60, headers={**server.headers, **(headers or {})})
