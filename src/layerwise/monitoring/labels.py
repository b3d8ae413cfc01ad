"""Labels that arrive after the answer: a server's review queue and labels files, read
back as rows and joined to the prediction log by request id.

- A review item (``review.jsonl``, written by the server for each abstained row) holds the
  row's inputs — images as base64 PNG, so a person can see what to label — and ``label``,
  null until a person fills it in (a value, or ``{output: value}`` for a model with more
  than one output).
- A labels file (JSON lines, or CSV) holds ``request_id``, optionally ``row`` (the row's
  index in its request, default 0) and ``label``: what the caller learnt later about an
  answer it was given.

Every record is identified by ``(request_id, row)``, the key the prediction log, the shadow
log and the review queue share.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from layerwise.errors import DataError

Key = tuple[str, int]


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


def key_of(record: dict[str, Any]) -> Key | None:
    """The ``(request_id, row)`` of a record, or None for one written without an id."""
    rid = record.get("request_id")
    if not isinstance(rid, str) or not rid:
        return None
    row = record.get("row", 0)
    return rid, int(row) if isinstance(row, int | float) and not isinstance(row, bool) else 0


def read_labels(path: str | Path) -> dict[Key, Any]:
    """``(request_id, row)`` → label, from a labels file (JSON lines or CSV)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"labels file not found: {p}")
    if p.suffix.lower() == ".csv":
        with open(p, newline="", encoding="utf-8") as f:
            records: list[dict[str, Any]] = list(csv.DictReader(f))
        for r in records:
            r["row"] = int(r["row"]) if str(r.get("row") or "").isdigit() else 0
    else:
        records = read_lines(p)
    out: dict[Key, Any] = {}
    for n, r in enumerate(records, 1):
        key = key_of(r) if isinstance(r, dict) else None
        if key is None or r.get("label") in (None, ""):
            raise DataError(f"{p}, record {n}: expected request_id and label")
        out[key] = r["label"]
    return out


def review_labels(items: list[dict[str, Any]]) -> dict[Key, Any]:
    """``(request_id, row)`` → label of the review items a person has labelled."""
    return {k: it["label"] for it in items
            if it.get("label") is not None and (k := key_of(it)) is not None}


def labelled_rows(items: list[dict[str, Any]], schema: Any, where: str
                  ) -> list[dict[str, Any]]:
    """The labelled review items as training rows: inputs (images decoded) and the label
    under each output's name."""
    outputs = [o.name for o in schema.outputs]
    images = {e.name for e in schema.images}
    rows = []
    for n, it in enumerate(items, 1):
        label = it.get("label")
        if label is None:
            continue
        inputs = it.get("inputs")
        if not isinstance(inputs, dict):
            raise DataError(f"{where}, item {n}: no inputs")
        row = {k: (decode_png(v, f"{where}, item {n}, {k}") if k in images else v)
               for k, v in inputs.items()}
        if isinstance(label, dict):
            missing = [o for o in outputs if o not in label]
            if missing:
                raise DataError(f"{where}, item {n}: the label gives no {missing[0]!r}")
            row.update({o: label[o] for o in outputs})
        elif len(outputs) == 1:
            row[outputs[0]] = label
        else:
            raise DataError(f"{where}, item {n}: a model with outputs {outputs} needs the "
                            "label as an object naming each")
        rows.append(row)
    return rows


def decode_png(value: Any, where: str) -> np.ndarray:
    """A base64 image file (as the review queue stores images) → pixels."""
    from PIL import Image, UnidentifiedImageError

    if not isinstance(value, str):
        raise DataError(f"{where}: the image was logged as a summary only ({value!r:.80}); "
                        "this review queue cannot be trained on")
    try:
        with Image.open(io.BytesIO(base64.b64decode(value, validate=True))) as im:
            return np.asarray(im)
    except (binascii.Error, ValueError, OSError, UnidentifiedImageError):
        raise DataError(f"{where}: not a base64 image file") from None


def encode_png(pixels: np.ndarray) -> str:
    """Pixels ``[H, W]`` or ``[H, W, 3]`` in 0–255 (as the server validates them) as a
    base64 PNG."""
    from PIL import Image

    x = np.asarray(pixels)
    if x.dtype != np.uint8:
        x = np.clip(np.round(x.astype(np.float32)), 0, 255).astype(np.uint8)
    if x.ndim == 3 and x.shape[2] == 1:
        x = x[..., 0]
    buf = io.BytesIO()
    Image.fromarray(x).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def is_review_queue(path: Path) -> bool:
    """Whether ``path`` is a server's review queue (JSON lines of items with inputs and a
    label field)."""
    if path.suffix.lower() != ".jsonl" or not path.is_file():
        return False
    with open(path, encoding="utf-8") as f:
        first = f.readline()
    try:
        item = json.loads(first)
    except ValueError:
        return False
    return isinstance(item, dict) and "inputs" in item and "label" in item
