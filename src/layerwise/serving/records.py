"""The files a server writes: the review queue, the prediction log and shadow comparisons.

- ``review.jsonl``: one line per abstained row — id, request id and row, time, model, the
  row's inputs (images as base64 PNG), the prediction it would have been, why it
  abstained, and ``"label": null`` for a person to fill in (:func:`label_review` does it
  by id); labelled lines are training data (``layerwise monitor … --retrain``).
- ``predictions.jsonl``: one line per answered row (request id and row, input summary,
  output, confidence, latency, model version), rotated by size (``predictions.jsonl.1``
  …); ``layerwise monitor`` reads it.
- ``shadow.jsonl``: primary and shadow answers side by side (see
  :func:`layerwise.monitoring.compare.report`).

Every line is written whole under a lock, so a reader never sees half a record.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

import numpy as np

from layerwise.errors import DataError
from layerwise.files import dumps_json, write_text
from layerwise.monitoring.labels import encode_png, read_lines

__all__ = ["JsonLines", "label_review", "read_lines", "review_record", "summary"]


def summary(row: dict[str, Any]) -> dict[str, Any]:
    """A row's inputs as logged: plain values kept, images as shape and mean (pixels are
    neither small nor private-safe to log)."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        if isinstance(v, np.ndarray):
            out[k] = {"shape": list(v.shape), "mean": round(float(v.mean()), 4)}
        elif isinstance(v, float) and v != v:
            out[k] = None
        else:
            out[k] = v
    return out


class JsonLines:
    """Append-only JSON lines, one per record, written whole under a lock; rotated past
    ``max_bytes`` when ``backups`` > 0.

    With ``buffer`` > 0 records are held in memory and written together once ``buffer``
    of them wait or ``flush_s`` has passed (the server also calls :meth:`flush` every
    ``flush_s``): one write of many lines instead of a write and a flush per answered row
    on the request path. A crash loses at most that much of the log."""

    def __init__(self, path: Path, max_bytes: int = 0, backups: int = 0, buffer: int = 0,
                 flush_s: float = 0.5) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._log = logging.getLogger(f"layerwise.serving.{uuid.uuid4().hex}")
        self._log.propagate = False
        self._log.setLevel(logging.INFO)
        handler = RotatingFileHandler(path, maxBytes=max_bytes if backups else 0,
                                      backupCount=backups, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(message)s"))
        self._log.addHandler(handler)
        self._handler = handler
        self.buffer, self.flush_s = buffer, flush_s
        self._held: list[str] = []
        self._since = time.monotonic()
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"), default=str, allow_nan=False)
        if not self.buffer:
            self._log.info(line)
            return
        with self._lock:
            self._held.append(line)
            if len(self._held) < self.buffer and time.monotonic() - self._since < self.flush_s:
                return
        self.flush()

    def flush(self) -> None:
        """Write the records held in memory."""
        with self._lock:
            lines, self._held = self._held, []
            self._since = time.monotonic()
            if lines:  # under the lock: a later batch never overtakes this one
                self._log.info("\n".join(lines))

    def close(self) -> None:
        self.flush()
        self._log.removeHandler(self._handler)
        self._handler.close()


def review_inputs(row: dict[str, Any]) -> dict[str, Any]:
    """A row's inputs as the review queue keeps them: whole, images as base64 PNG — a
    person labels what they can see, and the labelled items are training rows."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        if isinstance(v, np.ndarray):
            out[k] = encode_png(v)
        elif isinstance(v, float) and v != v:
            out[k] = None
        else:
            out[k] = v
    return out


def review_record(model: str, version: str, row: dict[str, Any], prediction: dict[str, Any],
                  reason: str, request_id: str | None = None, index: int = 0
                  ) -> dict[str, Any]:
    return {"id": uuid.uuid4().hex, "request_id": request_id, "row": index,
            "time": time.time(), "model": model, "version": version,
            "inputs": review_inputs(row), "prediction": prediction, "reason": reason,
            "label": None}


def label_review(path: str | Path, item_id: str, label: Any) -> None:
    """Give the review item ``item_id`` its label (the file is rewritten atomically)."""
    p = Path(path)
    items = read_lines(p)
    hits = [it for it in items if it.get("id") == item_id]
    if not hits:
        raise DataError(f"{p}: no review item with id {item_id!r}")
    hits[0]["label"] = label
    write_text(p, "".join(dumps_json(it) + "\n" for it in items))
