"""ServeSettings: every limit the server enforces, validated once at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import SoftPromptError
from .hosts import ANY_HOST, LOOPBACK_HOSTS, host_problem

SCHEDULERS = ("continuous", "static")  # batcher.SCHEDULERS, without importing the batcher (serve --help stays light)


@dataclass(frozen=True)
class ServeSettings:
    max_batch_size: int = 32  # rows per model call, and rows generating at once; prompts mix freely
    # continuous: completions join and leave the running batch at every decoding step (engine/);
    # static: as before the engine, a batch of equal requests runs to its end while new ones wait.
    scheduler: str = "continuous"
    kv_cache_bytes: int = 1 << 30  # key/value cache of the generating rows; requests that do not fit wait
    step_tokens: int = 256  # tokens one decoding step may run: a token per generating row, the rest prefill chunks
    max_queue: int = 256  # requests waiting for the model; one more gets 429
    timeout_s: float = 30.0  # a request not answered within this gets 503, and its work is dropped
    max_inputs: int = 64  # texts in one request; more gets 413
    max_input_chars: int = 8192  # characters in one text; more gets 413 (checked before tokenising)
    max_input_tokens: int = 2048  # tokens in one text; more gets 413
    # Tokens one request may make the model process: its texts, plus max_tokens for each text of a
    # completion. More gets 413: one request cannot hold the only worker for minutes.
    max_request_tokens: int = 16384
    max_tokens: int = 256  # cap on a completion's max_tokens
    max_body_bytes: int = 1 << 20  # request body size, counted while it arrives; more gets 413
    batch_wait_s: float = 0.002  # how long the batcher waits for requests arriving together
    poll_interval_s: float = 1.0  # how often the prompts folder is checked for changes
    api_key: str | None = None  # when set, everything but /health, /metrics and the docs needs "Bearer <key>"
    # Values of the Host header answered (port ignored); ("*",) answers any. Against DNS rebinding.
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS
    json_post_prefixes: tuple[str, ...] = ("/v1/",)  # POSTs under these paths must be application/json
    # Connection limits, enforced by the HTTP protocol (server.py), not the app:
    header_timeout_s: float = 10.0  # a request line + headers must arrive within this (slow clients are cut off)
    body_timeout_s: float = 60.0  # a request body must arrive within this after its headers
    max_connections: int = 512  # open connections; one more is answered 503 and closed

    def __post_init__(self) -> None:
        positive = (
            "max_batch_size", "max_queue", "max_inputs", "max_input_chars", "max_input_tokens",
            "max_request_tokens", "max_tokens", "max_body_bytes", "max_connections", "kv_cache_bytes",
        )  # fmt: skip
        for name in positive:
            if getattr(self, name) < 1:
                raise SoftPromptError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("timeout_s", "header_timeout_s", "body_timeout_s"):
            if not getattr(self, name) > 0:
                flag = name.removesuffix("_s").replace("_", "-")
                raise SoftPromptError(f"--{flag} must be positive (seconds), got {getattr(self, name)}")
        if self.scheduler not in SCHEDULERS:
            raise SoftPromptError(f"--scheduler must be one of {', '.join(SCHEDULERS)}, got {self.scheduler!r}")
        if self.step_tokens < self.max_batch_size:
            raise SoftPromptError(
                f"--step-tokens ({self.step_tokens}) must be at least --max-batch-size ({self.max_batch_size}): "
                "every generating row runs one token per step"
            )
        if self.batch_wait_s < 0 or self.poll_interval_s <= 0:
            raise SoftPromptError("batch_wait_s must be >= 0 and poll_interval_s > 0")
        if self.api_key is not None and not self.api_key.strip():
            raise SoftPromptError("--api-key must not be empty")
        hosts = tuple(h.strip().lower() for h in self.allowed_hosts if h.strip())
        if not hosts:
            raise SoftPromptError(f"--allowed-hosts is empty: name the hosts to answer, or '{ANY_HOST}' for any")
        for host in hosts:
            if problem := host_problem(host):
                raise SoftPromptError(f"--allowed-hosts: {problem}")
        object.__setattr__(self, "allowed_hosts", hosts)
