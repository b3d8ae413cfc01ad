"""One served model: its Predictor, batcher, cache, abstain rule and records.

``predict`` checks the rows against the schema, answers cached rows at once, sends the
rest to the micro-batcher, waits at most the model's timeout, routes low-confidence rows
to the review queue, and logs every answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from layerwise.serving import abstain
from layerwise.serving.batcher import MicroBatcher, Rows
from layerwise.serving.limits import PredictionCache, row_key
from layerwise.serving.metrics import Metrics
from layerwise.serving.records import JsonLines, review_record, summary
from layerwise.serving.settings import ModelSettings
from layerwise.serving.validate import (
    check_count,
    input_schema,
    output_schema,
    validate_indexed,
)


class RequestTimeout(Exception):
    """The request was not answered within the model's timeout."""


def _expire(fut: asyncio.Future[Any], seconds: float) -> None:
    if not fut.done():  # the batcher skips a job whose future is done
        fut.set_exception(RequestTimeout(f"no answer within {seconds:g} s"))


def weights_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


@dataclass
class Records:
    """Where a model's abstentions and answers are written."""

    review: JsonLines
    log: JsonLines


class ServedModel:
    """A supervised model behind the HTTP API (see the module docstring)."""

    def __init__(self, name: str, predictor: Any, settings: ModelSettings, metrics: Metrics,
                 records: Records, drift_window: int = 500) -> None:
        from layerwise.monitoring.rolling import RollingDrift

        self.name, self.predictor, self.settings = name, predictor, settings
        serve_memory_format(predictor)
        self.explainer: Any = None  # a copy of the predictor for /explain, made on first use
        self.metrics, self.records = metrics, records
        self.schema = predictor.schema
        self.version = weights_hash(Path(predictor.artifact.path) / "model.safetensors")
        self.inputs = [e.name for e in self.schema.inputs]
        self.cache = PredictionCache(settings.cache_size, settings.cache_ttl_s)
        self.batcher = MicroBatcher(self._run, max_batch=settings.max_batch_size,
                                    max_wait=settings.max_wait_ms / 1000,
                                    queue_size=settings.queue_size, on_batch=self._on_batch,
                                    prepare=lambda pairs: validate_indexed(self.schema, pairs),
                                    max_queue_wait=None if settings.queue_wait_ms is None
                                    else settings.queue_wait_ms / 1000)
        # the metric children of this model, looked up once (not per request)
        self._hits = metrics.cache.labels(name, "hit")
        self._misses = metrics.cache.labels(name, "miss")
        self._depth = metrics.queue_depth.labels(name)
        self._answered = metrics.answered.labels(name)
        self._abstained = metrics.abstained.labels(name)
        self.drift = RollingDrift(_reference(predictor), self.schema.inputs, drift_window)

    # -- description ----------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        meta = self.predictor.meta
        return {"name": self.name, "version": self.version, "task": meta.get("task"),
                "family": meta.get("family"), "backend": getattr(self.predictor, "backend",
                                                                 "eager"),
                "inputs": input_schema(self.schema),
                "outputs": output_schema(self.schema),
                "threshold": self.settings.threshold,
                "max_rows": self.settings.max_rows}

    # -- running --------------------------------------------------------------------------
    def _run(self, rows: Rows, batch_size: int) -> Rows:
        """A batch's predictions (on the batcher's thread, which also feeds the rolling
        drift scores: off the event loop)."""
        out: Rows = self.predictor.predict(rows, batch_size=batch_size)
        self.drift.add(rows)
        return out

    def _on_batch(self, rows: int, seconds: float) -> None:
        self.metrics.batch_rows.labels(self.name).observe(rows)
        self.metrics.batch_seconds.labels(self.name).observe(seconds)

    def warm_row(self) -> dict[str, Any]:
        """A valid row made from the schema alone: the warm-up request."""
        row: dict[str, Any] = {}
        for enc in self.schema.inputs:
            if enc.kind == "numeric":
                row[enc.name] = float(enc.shift)
            elif enc.kind == "category":
                row[enc.name] = enc.vocab[0]
            elif enc.kind == "binary":
                row[enc.name] = enc.labels()[0]
            elif enc.kind == "text":
                row[enc.name] = "hello"
            elif enc.kind == "image":
                shape = (*enc.size, 3) if enc.channels == 3 else tuple(enc.size)
                row[enc.name] = np.zeros(shape, dtype=np.uint8)
            elif enc.kind == "audio":  # a second of silence
                row[enc.name] = np.zeros(enc.cfg.sample_rate, dtype=np.float32)
        return row

    def warm(self) -> None:
        """Run a full batch and a single row once, so the first request is not slow (a
        generative model that does not predict rows draws one sample instead)."""
        from layerwise.errors import ConfigError

        row, size = self.warm_row(), self.settings.max_batch_size
        try:  # the predictor itself: warm-up rows are no traffic for the drift scores
            self.predictor.predict([row] * size, batch_size=size)
        except ConfigError:  # e.g. a VAE: /predict answers its 422, /sample works
            self.predictor.sample(1, seed=0)
            return
        self.predictor.predict([row], batch_size=1)

    async def predict(self, raw_rows: Any, request_id: str | None = None, log: bool = True
                      ) -> Rows:
        """Answers in order; raises InvalidInput, QueueFull, RequestTimeout or the model's
        own LayerwiseError. ``log``: write the prediction log and review queue (a shadow's
        answers go to the shadow log instead).

        Rows to compute are checked and decoded on the batcher's thread, with their batch
        (see batcher.py); rows answered from the cache are checked here."""
        t0 = time.perf_counter()
        self.batcher.admit()  # a full queue refuses before any work on the rows
        check_count(raw_rows, self.settings.max_rows)
        n = len(raw_rows)
        keys = [row_key(self.version, r, self.inputs) for r in raw_rows] \
            if self.cache.enabled else None
        answers: list[dict[str, Any] | None] = [self.cache.get(k) for k in keys] \
            if keys else [None] * n
        todo = [i for i, a in enumerate(answers) if a is None]
        self._hits.inc(n - len(todo))
        self._misses.inc(len(todo))
        rows: list[dict[str, Any] | None] = [None] * n
        if todo:
            prepared, got = await self._computed([(i, raw_rows[i]) for i in todo])
            for i, row, pred in zip(todo, prepared, got, strict=True):
                rows[i] = row
                answers[i] = self.cache_put(keys[i], pred) if keys else pred
        hit = [i for i in range(n) if rows[i] is None]
        if hit:
            checked = await self._checked([(i, raw_rows[i]) for i in hit])
            for i, row in zip(hit, checked, strict=True):
                rows[i] = row
            self.drift.add(checked)  # the computed rows were added on the batcher's thread
        done = [a for a in answers if a is not None]
        full = [r for r in rows if r is not None]
        return self._finish(full, done, (time.perf_counter() - t0) * 1000, request_id, log)

    async def _checked(self, pairs: list[tuple[int, Any]]) -> Rows:
        if self.schema.images or self.schema.audio:  # decoding files is slow: off the loop
            return await asyncio.to_thread(validate_indexed, self.schema, pairs)
        return validate_indexed(self.schema, pairs)

    async def _computed(self, pairs: list[tuple[int, Any]]) -> tuple[Rows, Rows]:
        """(checked rows, predictions) of ``pairs`` from the batcher, within the timeout."""
        fut = self.batcher.submit(pairs)  # type: ignore[arg-type]
        self._depth.set(self.batcher.depth)
        timer = asyncio.get_running_loop().call_later(self.settings.timeout_s, _expire, fut,
                                                      self.settings.timeout_s)
        try:
            prepared, got = await fut
        finally:
            timer.cancel()
        return prepared, got

    def cache_put(self, key: str, pred: dict[str, Any]) -> dict[str, Any]:
        self.cache.put(key, pred)
        return pred

    def _finish(self, rows: Rows, preds: Rows, ms: float, request_id: str | None = None,
                log: bool = True) -> Rows:
        """Abstain where the rule says so, and write the records."""
        out = []
        for i, (row, pred) in enumerate(zip(rows, preds, strict=True)):
            why = abstain.reason(pred, self.schema.outputs, self.settings.threshold)
            handed = why is None and pred.get("route") == "human"  # the model's hand-off
            if handed:  # (layerwise handoff): queued for review, the understanding kept
                why = str(pred.get("reason") or "handed off")
            self._answered.inc()
            if log:
                self.records.log.write({
                    "time": time.time(), "request_id": request_id, "row": i,
                    "model": self.name, "version": self.version, "inputs": summary(row),
                    "output": pred, "abstain": why is not None,
                    "confidence": abstain.confidence(pred, self.schema.outputs),
                    "latency_ms": round(ms, 3)})
            if why is None:
                out.append(pred)
                continue
            self._abstained.inc()
            review_id = None
            if log:
                item = review_record(self.name, self.version, row, pred, why, request_id, i)
                self.records.review.write(item)
                review_id = item["id"]
            out.append({**(pred if handed else {}), "abstain": True, "reason": why,
                        "route": "human", "review_id": review_id})
        return out


def serve_memory_format(predictor: Any) -> None:
    """Run a convolutional model in the memory format its training chose on this machine
    (the artifact's ``choices.memory_format``): channels-last convolutions over a batch of
    64 Fashion images ran about 3x faster here than the default layout (docs/benchmarks.md,
    issue 14), and the predictions are the same up to float rounding. Backends that build
    their own graph (ONNX Runtime) are left as they are."""
    import torch

    choice = ((getattr(predictor, "meta", None) or {}).get("choices") or {}).get(
        "memory_format")
    if choice != "channels_last" or getattr(predictor, "backend", None) not in (
            "eager", "bf16", "compiled"):
        return
    model = predictor.model
    if not any(p.dim() == 4 for p in model.parameters()):
        return
    model.to(memory_format=torch.channels_last)
    predictor.use_backend(predictor.backend)  # a bf16 copy is made from the new layout


def _reference(predictor: Any) -> dict[str, Any]:
    from layerwise.errors import ArtifactError
    from layerwise.monitoring import reference

    try:
        return reference.read(predictor.artifact.path)
    except ArtifactError:
        return {}
