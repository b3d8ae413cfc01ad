"""Rate limits and the prediction cache, both bounded in memory.

A token bucket per caller (its token, or its address without auth) refills at
``per_second`` up to ``burst``; an empty bucket answers 429 with the seconds until the next
token. The cache keeps decoded predictions keyed by the model's weights hash and the
canonical JSON of a row's inputs, at most ``size`` of them and none older than ``ttl``.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from typing import Any

from cachetools import LRUCache, TTLCache


class RateLimiter:
    """Token buckets keyed by caller; the least recently seen callers are forgotten past
    ``max_callers`` (a forgotten caller starts again with a full bucket)."""

    def __init__(self, per_second: float, burst: int, max_callers: int = 10_000) -> None:
        self.rate, self.burst = per_second, burst
        self._buckets: LRUCache[str, tuple[float, float]] = LRUCache(max_callers)
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> float:
        """0 when ``key`` may go ahead (a token is spent), else the seconds to wait."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate


def retry_after(seconds: float) -> str:
    """A Retry-After header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


def row_key(model_hash: str, row: dict[str, Any], inputs: list[str]) -> str:
    """The cache key of one row: its inputs as canonical JSON, with the model's hash."""
    body = json.dumps({k: row.get(k) for k in inputs}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(f"{model_hash}\n{body}".encode()).hexdigest()


class PredictionCache:
    """An LRU of predictions with a maximum age; ``size`` 0 turns it off."""

    def __init__(self, size: int, ttl: float) -> None:
        self._cache: TTLCache[str, dict[str, Any]] | None = (
            TTLCache(size, ttl) if size > 0 else None)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """False when ``size`` is 0: no keys need computing at all."""
        return self._cache is not None

    def get(self, key: str) -> dict[str, Any] | None:
        if self._cache is None:
            return None
        with self._lock:
            return self._cache.get(key)

    def put(self, key: str, value: dict[str, Any]) -> None:
        if self._cache is not None:
            with self._lock:
                self._cache[key] = value

    def __len__(self) -> int:
        return 0 if self._cache is None else len(self._cache)
