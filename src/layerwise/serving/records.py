"""The files a server writes: the review queue, the prediction log and shadow comparisons.

- ``review.jsonl``: one line per abstained row — id, time, model, the row's inputs, the
  prediction it would have been, why it abstained, and ``"label": null`` for a person to
  fill in (:func:`label_review` does it by id); labelled lines are training data.
- ``predictions.jsonl``: one line per answered row (input summary, output, confidence,
  latency, model version), rotated by size (``predictions.jsonl.1`` …); ``layerwise
  monitor`` reads it.
- ``shadow.jsonl``: primary and shadow answers side by side (see :func:`shadow_report`).

Every line is written whole under a lock, so a reader never sees half a record.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

import numpy as np

from layerwise.errors import DataError
from layerwise.files import dumps_json, write_text


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
    ``max_bytes`` when ``backups`` > 0."""

    def __init__(self, path: Path, max_bytes: int = 0, backups: int = 0) -> None:
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

    def write(self, record: dict[str, Any]) -> None:
        self._log.info(json.dumps(record, separators=(",", ":"), default=str,
                                  allow_nan=False))

    def close(self) -> None:
        self._log.removeHandler(self._handler)
        self._handler.close()


def review_record(model: str, version: str, row: dict[str, Any], prediction: dict[str, Any],
                  reason: str) -> dict[str, Any]:
    return {"id": uuid.uuid4().hex, "time": time.time(), "model": model, "version": version,
            "inputs": summary(row), "prediction": prediction, "reason": reason,
            "label": None}


def read_lines(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file (its rotated parts first, oldest first)."""
    p = Path(path)
    parts = sorted(p.parent.glob(p.name + ".*"), key=lambda q: -int(q.suffix[1:])
                   if q.suffix[1:].isdigit() else 0)
    out = []
    for part in [*[q for q in parts if q.suffix[1:].isdigit()], p]:
        if not part.is_file():
            continue
        for n, line in enumerate(part.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except ValueError:
                    raise DataError(f"{part}, line {n}: not valid JSON") from None
    if not out and not p.is_file():
        raise DataError(f"log not found: {p}")
    return out


def label_review(path: str | Path, item_id: str, label: Any) -> None:
    """Give the review item ``item_id`` its label (the file is rewritten atomically)."""
    p = Path(path)
    items = read_lines(p)
    hits = [it for it in items if it.get("id") == item_id]
    if not hits:
        raise DataError(f"{p}: no review item with id {item_id!r}")
    hits[0]["label"] = label
    write_text(p, "".join(dumps_json(it) + "\n" for it in items))


def shadow_report(path: str | Path) -> dict[str, Any]:
    """Agreement of primary and shadow answers, and their latencies (medians, ms)."""
    items = read_lines(path)
    if not items:
        return {"requests": 0}
    agree = [it["primary"] == it["shadow"] for it in items]
    lat = {side: [it[f"{side}_ms"] for it in items if it.get(f"{side}_ms") is not None]
           for side in ("primary", "shadow")}
    return {"requests": len(items), "agreement": float(np.mean(agree)),
            **{f"{side}_median_ms": float(np.median(v)) if v else None
               for side, v in lat.items()}}
