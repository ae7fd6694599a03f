"""Prometheus text-format metrics, written by hand (no extra dependency).

One `ServeMetrics` per app (no module-level state): request counts and errors
by endpoint and status, a request latency histogram, a batch-size histogram,
the request body bytes read,
and at scrape time the queue depth, prompts loaded and the predictor's prompt
KV-cache statistics.
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)

Labels = tuple[tuple[str, str], ...]


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    escape = lambda v: v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in labels) + "}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Counter:
    def __init__(self, name: str, help_text: str):
        self.name, self.help = name, help_text
        self.values: dict[Labels, float] = defaultdict(float)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        self.values[tuple(sorted(labels.items()))] += amount

    def lines(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        for labels, value in sorted(self.values.items()):
            yield f"{self.name}{_labels(labels)} {_number(value)}"


class Histogram:
    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...]):
        self.name, self.help, self.buckets = name, help_text, buckets
        self.counts: dict[Labels, list[int]] = {}
        self.sums: dict[Labels, float] = defaultdict(float)

    def observe(self, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        counts = self.counts.setdefault(key, [0] * (len(self.buckets) + 1))
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                counts[i] += 1
        counts[-1] += 1  # +Inf
        self.sums[key] += value

    def lines(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        for labels, counts in sorted(self.counts.items()):
            for bound, count in zip((*self.buckets, math.inf), counts):
                yield f"{self.name}_bucket{_labels((*labels, ('le', _number(bound))))} {count}"
            yield f"{self.name}_sum{_labels(labels)} {_number(self.sums[labels])}"
            yield f"{self.name}_count{_labels(labels)} {counts[-1]}"


def _gauge(name: str, help_text: str, value: float, kind: str = "gauge") -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {_number(value)}"]


class ServeMetrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = Counter("softprompt_requests_total", "HTTP requests answered, by endpoint and status code.")
        self.errors = Counter("softprompt_request_errors_total", "HTTP requests answered with a 4xx or 5xx status.")
        self.inputs = Counter("softprompt_inputs_total", "Texts classified or completed, by endpoint.")
        self.latency = Histogram(
            "softprompt_request_latency_seconds", "Time from request to response start.", LATENCY_BUCKETS
        )
        self.batch_size = Histogram("softprompt_batch_size", "Rows per model call.", BATCH_BUCKETS)
        self.batch_requests = Histogram(
            "softprompt_batch_requests", "Requests merged into one model call.", BATCH_BUCKETS
        )
        self.batch_seconds = Histogram("softprompt_batch_seconds", "Time of one model call.", LATENCY_BUCKETS)
        self.body_bytes = Counter("softprompt_request_body_bytes_total", "Request body bytes passed to the app.")
        self.body_bytes.inc(0)  # shown from the start: a scrape (or a test) can read it before any body

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests.inc(endpoint=endpoint, status=str(status))
            if status >= 400:
                self.errors.inc(endpoint=endpoint, status=str(status))
            self.latency.observe(seconds, endpoint=endpoint)

    def observe_inputs(self, endpoint: str, count: int) -> None:
        with self._lock:
            self.inputs.inc(count, endpoint=endpoint)

    def observe_body(self, nbytes: int) -> None:
        with self._lock:
            self.body_bytes.inc(nbytes)

    def observe_batch(self, rows: int, requests: int, seconds: float) -> None:
        with self._lock:
            self.batch_size.observe(rows)
            self.batch_requests.observe(requests)
            self.batch_seconds.observe(seconds)

    def render(self, *, queue_depth: int, prompts_loaded: int, cache_stats: Mapping[str, float]) -> str:
        with self._lock:
            lines = [
                *self.requests.lines(),
                *self.errors.lines(),
                *self.inputs.lines(),
                *self.latency.lines(),
                *self.batch_size.lines(),
                *self.batch_requests.lines(),
                *self.batch_seconds.lines(),
                *self.body_bytes.lines(),
            ]
        lines += _gauge("softprompt_queue_depth", "Requests waiting for the model.", queue_depth)
        lines += _gauge("softprompt_prompts_loaded", "Prompts being served.", prompts_loaded)
        kinds = {"hits": "counter", "misses": "counter"}
        for key, value in sorted(cache_stats.items()):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                name = f"softprompt_prompt_cache_{key}" + ("_total" if key in kinds else "")
                lines += _gauge(name, f"Prompt KV cache: {key}.", value, kinds.get(key, "gauge"))
        return "\n".join(lines) + "\n"
