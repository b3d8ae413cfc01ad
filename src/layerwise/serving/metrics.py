"""The server's Prometheus metrics, in a registry of its own (one per app, so apps in one
process, as in tests, do not collide).

requests by model and status, request latency, rows per forward pass (the batch-size
histogram shows whether batching coalesces), queue depth, cache hits and misses, abstained
rows, and the rolling drift score of each model's inputs.
"""

from __future__ import annotations

from typing import Any

LATENCY_BUCKETS = (.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    """Every metric the server exports; ``render()`` is the /metrics body."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("layerwise_requests", "Requests answered, by model and status",
                                ["model", "status"], registry=r)
        self.latency = Histogram("layerwise_request_seconds", "Request latency",
                                 ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_rows = Histogram("layerwise_batch_rows", "Rows per forward pass",
                                    ["model"], buckets=BATCH_BUCKETS, registry=r)
        self.batch_seconds = Histogram("layerwise_batch_seconds", "Forward pass time",
                                       ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("layerwise_queue_depth", "Requests waiting", ["model"],
                                 registry=r)
        self.cache = Counter("layerwise_cache", "Prediction cache lookups by result",
                             ["model", "result"], registry=r)
        self.abstained = Counter("layerwise_abstained_rows", "Rows routed to a person",
                                 ["model"], registry=r)
        self.answered = Counter("layerwise_answered_rows", "Rows answered (abstained or not)",
                                ["model"], registry=r)
        self.drift = Gauge("layerwise_drift_score", "Rolling drift score per input feature "
                           "(PSI for numbers and categories, standardised mean shift for "
                           "images)", ["model", "feature"], registry=r)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def value(self, name: str, **labels: Any) -> float:
        """A sample's current value (tests and benchmarks read it)."""
        got = self.registry.get_sample_value(name, labels)
        return 0.0 if got is None else float(got)
