"""Prometheus metrics through `prometheus_client`, one registry per app (no module-level state).

Counted as requests are answered: requests and errors by endpoint and status,
request latency, texts classified or completed, request body bytes read, and
per model call (a classification batch or a generation step) its rows,
requests and time. Read at scrape time (`ServeMetrics.read`): the queue depth,
the prompts loaded, the prompt key/value cache's counters (hits, misses,
evictions: counters) and sizes (gauges), and the generation engine's rows
(decoding, prefilling, waiting) and key/value cache bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
CACHE_COUNTERS = ("hits", "misses", "evictions")  # of the prompt cache's stats; the others are gauges
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ServeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._read: Callable[[], Mapping[str, float]] = dict
        by_endpoint = ("endpoint", "status")
        self.requests = Counter(
            "softprompt_requests", "HTTP requests answered, by endpoint and status code.", by_endpoint,
            registry=self.registry,
        )  # fmt: skip
        self.errors = Counter(
            "softprompt_request_errors", "HTTP requests answered with a 4xx or 5xx status.", by_endpoint,
            registry=self.registry,
        )  # fmt: skip
        self.inputs = Counter(
            "softprompt_inputs", "Texts classified or completed, by endpoint.", ("endpoint",), registry=self.registry
        )
        self.latency = Histogram(
            "softprompt_request_latency_seconds", "Time from request to response start.", ("endpoint",),
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.batch_size = Histogram(
            "softprompt_batch_size", "Rows per model call (a classification batch or a generation step).",
            buckets=BATCH_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.batch_requests = Histogram(
            "softprompt_batch_requests", "Requests sharing one model call.", buckets=BATCH_BUCKETS,
            registry=self.registry,
        )  # fmt: skip
        self.batch_seconds = Histogram(
            "softprompt_batch_seconds", "Time of one model call.", buckets=LATENCY_BUCKETS, registry=self.registry
        )
        self.body_bytes = Counter(
            "softprompt_request_body_bytes", "Request body bytes passed to the app.", registry=self.registry
        )
        self.registry.register(_ReadAtScrape(lambda: self._read()))

    def read(self, values: Callable[[], Mapping[str, float]]) -> None:
        """What to read at each scrape: {name: value} for queue_depth, prompts_loaded, cache_* and engine_*."""
        self._read = values

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        if status >= 400:
            self.errors.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def observe_inputs(self, endpoint: str, count: int) -> None:
        self.inputs.labels(endpoint).inc(count)

    def observe_body(self, nbytes: int) -> None:
        self.body_bytes.inc(nbytes)

    def observe_batch(self, rows: int, requests: int, seconds: float) -> None:
        self.batch_size.observe(rows)
        self.batch_requests.observe(requests)
        self.batch_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _ReadAtScrape:
    """A collector of values that live elsewhere (queue, prompt cache, engine), read when scraped."""

    HELP = {
        "queue_depth": "Requests waiting for the model.",
        "prompts_loaded": "Prompts being served.",
        "engine_rows_decoding": "Generation rows producing tokens.",
        "engine_rows_prefilling": "Generation rows whose input is being run.",
        "engine_rows_waiting": "Generation rows waiting for a free row or key/value memory.",
        "engine_kv_cache_bytes": "Key/value cache allocated by the generation engine.",
        "engine_kv_cache_max_bytes": "The generation engine's key/value cache budget (--kv-cache-mb).",
    }

    def __init__(self, values: Callable[[], Mapping[str, float]]):
        self.values = values

    def collect(self) -> Iterator[Metric]:
        for key, value in sorted(self.values().items()):
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if key.startswith("cache_"):
                stat = key.removeprefix("cache_")
                name, text = f"softprompt_prompt_cache_{stat}", f"Prompt key/value cache: {stat}."
                kind = CounterMetricFamily if stat in CACHE_COUNTERS else GaugeMetricFamily
                yield kind(name, text, value=value)
            else:
                yield GaugeMetricFamily(f"softprompt_{key}", self.HELP.get(key, key), value=value)
