"""What the app holds while it runs: the served models, routes, limits and metrics, and
the loading/draining state that /ready reports."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import hmac
import logging
import random
import time
from pathlib import Path
from typing import Any

from layerwise.errors import ArtifactError
from layerwise.serving.limits import RateLimiter
from layerwise.serving.metrics import Metrics
from layerwise.serving.model import Records, ServedModel
from layerwise.serving.records import JsonLines
from layerwise.serving.settings import ServeSettings

log = logging.getLogger("layerwise.serving")


class AppState:
    """The server's state; ``load()`` fills ``models`` and sets ``ready``."""

    def __init__(self, sources: dict[str, Any], settings: ServeSettings) -> None:
        self.sources, self.settings = sources, settings
        self.metrics = Metrics()
        self.models: dict[str, ServedModel] = {}
        self.policies: dict[str, Any] = {}
        self.recommenders: dict[str, Any] = {}
        self.ready = False
        self.draining = False
        self.received = self.answered = 0  # /v1 requests (see app.CloseWhenDraining)
        self.error: str | None = None
        self.limiter = (RateLimiter(settings.rate.per_second, settings.rate.burst)
                        if settings.rate else None)
        state = Path(settings.state_dir)
        self.review = JsonLines(state / "review.jsonl")
        self.log = JsonLines(state / "predictions.jsonl", settings.log_max_bytes,
                             settings.log_backups, buffer=256)
        self.shadow = JsonLines(state / "shadow.jsonl", buffer=256)
        self.background: set[asyncio.Task[Any]] = set()
        self._flusher: asyncio.Task[None] | None = None
        self._counted: dict[tuple[str, int], tuple[Any, Any]] = {}

    async def _flush_logs(self) -> None:
        """Write the buffered log records every ``flush_s`` (see records.JsonLines)."""
        while True:
            await asyncio.sleep(self.log.flush_s)
            self.flush()

    def flush(self) -> None:
        for f in (self.log, self.shadow):
            f.flush()

    # -- loading --------------------------------------------------------------------------
    def _load_one(self, name: str, source: Any) -> None:
        from layerwise.artifact import read_header
        from layerwise.inference.predictor import Predictor

        if not isinstance(source, str | Path):  # a Predictor already loaded (tests, Python)
            predictor = source
        elif read_header(source).get("kind") == "policy":
            from layerwise.rl.policy import Policy

            self.policies[name] = Policy.load(source)
            return
        elif read_header(source).get("kind") == "recommender":
            from layerwise.recommend.recommender import Recommender

            found = Recommender.load(source)
            found.recommend(found.users[0] if found.users else "warm-up", 1)  # warm
            self.recommenders[name] = found
            return
        else:
            predictor = Predictor.load(source, backend=self.settings.model(name).backend)
        served = ServedModel(name, predictor, self.settings.model(name), self.metrics,
                             Records(self.review, self.log), self.settings.drift_window)
        served.warm()
        self.models[name] = served

    async def load(self) -> None:
        """Load and warm every model off the event loop, then start the batchers."""
        try:
            for name, source in self.sources.items():
                await asyncio.to_thread(self._load_one, name, source)
            for m in self.models.values():
                m.batcher.start()
            self._flusher = asyncio.create_task(self._flush_logs())
            # what loading made (torch, the framework, the models: ~200k objects) leaves
            # the collector's view: a full collection then walks only what requests make,
            # instead of pausing every answer for 100-300 ms (docs/benchmarks.md, issue 14)
            gc.collect()
            gc.freeze()
            self.ready = True
            log.info("ready: %s", ", ".join(self.sources))
        except (ArtifactError, OSError, ValueError, RuntimeError) as e:  # /ready says why
            self.error = str(e)
            log.error("loading failed: %s", e)

    async def close(self, timeout: float) -> None:
        """Finish queued requests (up to ``timeout``), then stop the batchers."""
        self.draining = True
        end = time.monotonic() + timeout
        for m in self.models.values():
            await m.batcher.drain(max(0.0, end - time.monotonic()))
        if self.background:
            await asyncio.wait(self.background, timeout=max(0.1, end - time.monotonic()))
        for m in self.models.values():
            await m.batcher.close()
        if self._flusher is not None:
            self._flusher.cancel()
        for f in (self.review, self.log, self.shadow):
            f.close()

    # -- requests -------------------------------------------------------------------------
    def count(self, model: str, status: int, seconds: float) -> None:
        """One answered request in /metrics (the metric children looked up once each)."""
        key = (model, status)
        child = self._counted.get(key)
        if child is None:
            child = self._counted[key] = (self.metrics.requests.labels(model, str(status)),
                                          self.metrics.latency.labels(model))
        child[0].inc()
        child[1].observe(seconds)

    def authorized(self, header: str | None) -> bool:
        token = self.settings.token
        if not token:
            return True
        given = (header or "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(given.encode(), token.encode())

    def route(self, name: str, key: str | None) -> tuple[str, str | None]:
        """The model that answers a request to ``name`` and the shadow that mirrors it
        (an A/B route splits by a hash of ``key``, so a key always meets one model)."""
        route = self.settings.routes.get(name)
        if route is None:
            return name, None
        if key is None:
            point = random.random() * 100
        else:
            point = int(hashlib.sha256(f"{name}\n{key}".encode()).hexdigest()[:8], 16) \
                % 10000 / 100
        total = 0.0
        chosen = next(iter(route.split))
        for model, pct in route.split.items():
            total += pct
            if point < total:
                chosen = model
                break
        shadow = route.shadow if route.shadow != chosen else None
        return chosen, shadow
