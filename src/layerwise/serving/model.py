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
from layerwise.serving.validate import input_schema, output_schema, validate_rows


class RequestTimeout(Exception):
    """The request was not answered within the model's timeout."""


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
        self.explainer: Any = None  # a copy of the predictor for /explain, made on first use
        self.metrics, self.records = metrics, records
        self.schema = predictor.schema
        self.version = weights_hash(Path(predictor.artifact.path) / "model.safetensors")
        self.inputs = [e.name for e in self.schema.inputs]
        self.cache = PredictionCache(settings.cache_size, settings.cache_ttl_s)
        self.batcher = MicroBatcher(self._run, max_batch=settings.max_batch_size,
                                    max_wait=settings.max_wait_ms / 1000,
                                    queue_size=settings.queue_size, on_batch=self._on_batch)
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
        out: Rows = self.predictor.predict(rows, batch_size=batch_size)
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
        return row

    def warm(self) -> None:
        """Run a full batch and a single row once, so the first request is not slow (a
        generative model that does not predict rows draws one sample instead)."""
        from layerwise.errors import ConfigError

        row = self.warm_row()
        try:
            self._run([row] * self.settings.max_batch_size, self.settings.max_batch_size)
        except ConfigError:  # e.g. a VAE: /predict answers its 422, /sample works
            self.predictor.sample(1, seed=0)
            return
        self._run([row], 1)

    async def predict(self, raw_rows: Any) -> Rows:
        """Answers in order; raises InvalidInput, QueueFull, RequestTimeout or the model's
        own LayerwiseError."""
        t0 = time.perf_counter()
        self.batcher.admit()  # a full queue refuses before the work of decoding the rows
        if self.schema.images:  # decoding image files is slow: keep it off the event loop
            rows = await asyncio.to_thread(validate_rows, self.schema, raw_rows,
                                           self.settings.max_rows)
        else:
            rows = validate_rows(self.schema, raw_rows, self.settings.max_rows)
        keys = [row_key(self.version, r, self.inputs) for r in raw_rows]
        answers: list[dict[str, Any] | None] = [self.cache.get(k) for k in keys]
        hits = sum(a is not None for a in answers)
        self.metrics.cache.labels(self.name, "hit").inc(hits)
        self.metrics.cache.labels(self.name, "miss").inc(len(rows) - hits)
        todo = [i for i, a in enumerate(answers) if a is None]
        if todo:
            fut = self.batcher.submit([rows[i] for i in todo])
            self.metrics.queue_depth.labels(self.name).set(self.batcher.depth)
            try:
                got = await asyncio.wait_for(fut, self.settings.timeout_s)
            except TimeoutError:
                raise RequestTimeout(f"no answer within {self.settings.timeout_s:g} s") from None
            for i, pred in zip(todo, got, strict=True):
                answers[i] = self.cache_put(keys[i], pred)
        done = [a for a in answers if a is not None]
        self.drift.add(rows)
        return self._finish(rows, done, (time.perf_counter() - t0) * 1000)

    def cache_put(self, key: str, pred: dict[str, Any]) -> dict[str, Any]:
        self.cache.put(key, pred)
        return pred

    def _finish(self, rows: Rows, preds: Rows, ms: float) -> Rows:
        """Abstain where the rule says so, and write the records."""
        out = []
        for row, pred in zip(rows, preds, strict=True):
            why = abstain.reason(pred, self.schema.outputs, self.settings.threshold)
            self.metrics.answered.labels(self.name).inc()
            self.records.log.write({"time": time.time(), "model": self.name,
                                    "version": self.version, "inputs": summary(row),
                                    "output": pred, "abstain": why is not None,
                                    "confidence": abstain.confidence(pred, self.schema.outputs),
                                    "latency_ms": round(ms, 3)})
            if why is None:
                out.append(pred)
                continue
            self.metrics.abstained.labels(self.name).inc()
            item = review_record(self.name, self.version, row, pred, why)
            self.records.review.write(item)
            out.append({"abstain": True, "reason": why, "route": "human",
                        "review_id": item["id"]})
        return out


def _reference(predictor: Any) -> dict[str, Any]:
    from layerwise.errors import ArtifactError
    from layerwise.monitoring import reference

    try:
        return reference.read(predictor.artifact.path)
    except ArtifactError:
        return {}
