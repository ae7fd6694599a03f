"""ServeSettings: every limit the server enforces, validated once at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import SoftPromptError


@dataclass(frozen=True)
class ServeSettings:
    max_batch_size: int = 32  # rows per model call; requests for different prompts share it
    max_queue: int = 256  # requests waiting for the model; one more gets 429
    timeout_s: float = 30.0  # a request not answered within this gets 503
    max_inputs: int = 64  # texts in one request; more gets 413
    max_input_chars: int = 8192  # characters in one text; more gets 413
    max_tokens: int = 256  # cap on a completion's max_tokens
    max_body_bytes: int = 1 << 20  # request body size; more gets 413
    batch_wait_s: float = 0.002  # how long the batcher waits for requests arriving together
    poll_interval_s: float = 1.0  # how often the prompts folder is checked for changes
    api_key: str | None = None  # when set, /v1/* needs "Authorization: Bearer <key>"

    def __post_init__(self) -> None:
        positive = ("max_batch_size", "max_queue", "max_inputs", "max_input_chars", "max_tokens", "max_body_bytes")
        for name in positive:
            if getattr(self, name) < 1:
                raise SoftPromptError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.timeout_s <= 0:
            raise SoftPromptError(f"--timeout must be positive (seconds), got {self.timeout_s}")
        if self.batch_wait_s < 0 or self.poll_interval_s <= 0:
            raise SoftPromptError("batch_wait_s must be >= 0 and poll_interval_s > 0")
        if self.api_key is not None and not self.api_key.strip():
            raise SoftPromptError("--api-key must not be empty")
