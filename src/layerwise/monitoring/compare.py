"""The A/B and shadow comparison report of a running (or stopped) server, with the
labelled metric wherever labels have arrived.

The server logs every answered row in ``predictions.jsonl`` (model, version, request id
and row, output, latency) and every mirrored row in ``shadow.jsonl`` (the primary's and the
shadow's answers side by side). Labels come later — from the review queue, where a person
labels abstained rows, and from labels files (``request_id``, ``row``, ``label``; see
labels.py) — and are joined to both logs by ``(request_id, row)``.

Per model version: rows, abstain rate, latency p50/p99, labelled rows and the metric on
them (accuracy for a class, MAE for a number: the first output's). For the shadow:
agreement, both latencies (medians), and each side's metric on the labelled rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from layerwise.monitoring.labels import Key, key_of, read_labels, read_lines, review_labels


def _metric(pairs: list[tuple[Any, Any]]) -> dict[str, Any]:
    """Accuracy of predicted vs true labels, or MAE when both are numbers; abstained
    rows (no prediction) are left out and counted."""
    answered = [(p, y) for p, y in pairs if p is not None]
    out: dict[str, Any] = {"labelled": len(pairs), "labelled_answered": len(answered)}
    if not answered:
        return out
    if all(_number(p) and _number(y) for p, y in answered):
        out["mae"] = float(np.mean([abs(float(p) - float(y)) for p, y in answered]))
    else:
        out["accuracy"] = float(np.mean([str(p) == str(y) for p, y in answered]))
    return out


def _number(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int | float):
        return True
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


def _first(output: Any) -> Any:
    """The first output's value of a logged prediction (None when it abstained)."""
    if not isinstance(output, dict):
        return None
    for k, v in output.items():
        if not k.endswith(("_probability", "_probabilities", "_set")):
            return v
    return None


def versions(records: list[dict[str, Any]], labels: dict[Key, Any]) -> dict[str, Any]:
    """Per ``model@version``: rows, abstain rate, latency, and the labelled metric."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if isinstance(r, dict) and "model" in r:
            groups.setdefault(f"{r['model']}@{r.get('version', '?')}", []).append(r)
    out = {}
    for name, rs in sorted(groups.items()):
        lat = [float(r["latency_ms"]) for r in rs if _number(r.get("latency_ms"))]
        pairs = [(None if r.get("abstain") else _first(r.get("output")), labels[k])
                 for r in rs if (k := key_of(r)) is not None and k in labels]
        out[name] = {"rows": len(rs),
                     "abstain_rate": float(np.mean([bool(r.get("abstain")) for r in rs])),
                     "latency_p50_ms": float(np.percentile(lat, 50)) if lat else None,
                     "latency_p99_ms": float(np.percentile(lat, 99)) if lat else None,
                     **_metric(pairs)}
    return out


def shadow(records: list[dict[str, Any]], labels: dict[Key, Any]) -> dict[str, Any]:
    """Agreement of primary and shadow, their latencies, and each side's labelled metric."""
    items = [r for r in records if isinstance(r, dict) and "primary" in r]
    if not items:
        return {"requests": 0}
    lat = {side: [it[f"{side}_ms"] for it in items if _number(it.get(f"{side}_ms"))]
           for side in ("primary", "shadow")}
    out: dict[str, Any] = {
        "requests": len(items),
        "agreement": float(np.mean([it["primary"] == it["shadow"] for it in items])),
        **{f"{side}_median_ms": float(np.median(v)) if v else None
           for side, v in lat.items()}}
    joined = [(it, labels[k]) for it in items if (k := key_of(it)) is not None and k in labels]
    for side in ("primary", "shadow"):
        pairs = [(None if it[side] == "abstain" else it[side], y) for it, y in joined]
        out[side] = _metric(pairs)
    return out


def _lines(path: Path) -> list[dict[str, Any]]:
    has = path.is_file() or any(path.parent.glob(path.name + ".*"))
    return read_lines(path) if has else []


def report(state_dir: str | Path, label_files: list[str | Path] | None = None
           ) -> dict[str, Any]:
    """The comparison report of the server state in ``state_dir`` (its review queue's
    labels joined, and those of ``label_files``)."""
    d = Path(state_dir)
    labels = review_labels(_lines(d / "review.jsonl"))
    for f in label_files or []:
        labels.update(read_labels(f))
    return {"labels": len(labels), "versions": versions(_lines(d / "predictions.jsonl"),
                                                       labels),
            "shadow": shadow(_lines(d / "shadow.jsonl"), labels)}
