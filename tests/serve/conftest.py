"""Shared pieces of the serve tests: tiny prompts in a folder, and a server on 127.0.0.1 in a thread."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from softprompt.infer import Predictor
from softprompt.prompt import PromptMeta, SoftPrompt
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
def serving(base, folder: Path, *, delay: float = 0.0, **settings) -> Iterator[RunningServer]:
    """A real uvicorn server on 127.0.0.1:<free port> serving `folder`; stopped gracefully at the end."""
    predictor = Predictor(base)
    wrapped = SlowPredictor(predictor, delay) if delay else predictor
    registry = PromptRegistry(folder, wrapped, base)
    app = create_app(wrapped, registry, ServeSettings(**settings))
    server = start_in_thread(app)
    server.predictor = predictor
    try:
        yield server
    finally:
        server.stop()
