"""When a prediction goes to a person instead of the caller (the one copy of the rule: the
server's abstain step and ``predict``'s hand-off both use it).

A row abstains when its confidence is below a threshold, or when a conformal prediction
set (``<output>_set``, which ``predict`` adds once ``layerwise calibrate --conformal`` has
fitted one) holds more than one label, or none. The confidence of an output is the
probability of its chosen class (category), ``max(p, 1 - p)`` (binary), or the lowest
probability of a token's chosen tag (tags). A single threshold (the server's
``threshold`` setting) applies to the least confident category or binary output; a
mapping gives each named output its own.

**Hand-off** is that rule with the thresholds stored in the artifact (``layerwise.json →
handoff``, fitted on the validation split by ``layerwise handoff``), plus one more: a row
whose output (e.g. ``intent``) is the out-of-scope label goes to a person too. ``predict``
then adds ``route`` (``"bot"`` or ``"human"``) and, for ``human``, ``reason`` to each row.
:func:`choose_threshold` picks a threshold for a target accuracy on the answered rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

HANDOFF = "handoff"  # the key of the stored hand-off settings in layerwise.json


def output_confidence(prediction: Mapping[str, Any], enc: Any) -> float | None:
    """The confidence of one output of one decoded prediction, or None if it has none."""
    if enc.kind == "tags":
        tagged = prediction.get(enc.name)
        probs = tagged.get("probabilities") if isinstance(tagged, Mapping) else None
        return float(min(probs)) if probs else None
    p = prediction.get(f"{enc.name}_probability")
    if not isinstance(p, int | float) or enc.kind not in ("category", "binary"):
        return None
    return float(p) if enc.kind == "category" else max(float(p), 1 - float(p))


def confidence(prediction: dict[str, Any], outputs: list[Any]) -> float | None:
    """The lowest confidence over the classifying (category, binary) outputs."""
    confs = [c for enc in outputs if enc.kind in ("category", "binary")
             and (c := output_confidence(prediction, enc)) is not None]
    return min(confs) if confs else None


def reason(prediction: dict[str, Any], outputs: list[Any],
           threshold: float | Mapping[str, float] | None) -> str | None:
    """Why this prediction should abstain, or None to answer it. ``threshold``: one number
    for the least confident classifying output, or a threshold per output name."""
    for key, value in prediction.items():
        if key.endswith("_set") and isinstance(value, list | tuple) and len(value) != 1:
            return f"the conformal set {key!r} holds {len(value)} labels"  # 0: none fits
    if isinstance(threshold, Mapping):
        for enc in outputs:
            t = threshold.get(enc.name)
            conf = output_confidence(prediction, enc) if t is not None else None
            if conf is not None and conf < t:  # type: ignore[operator]
                return f"{enc.name} confidence {conf:.3f} is below its threshold {t:g}"
        return None
    conf = confidence(prediction, outputs)
    if threshold is not None and conf is not None and conf < threshold:
        return f"confidence {conf:.3f} is below the threshold {threshold:g}"
    return None


def handoff_reason(prediction: dict[str, Any], outputs: list[Any],
                   settings: Mapping[str, Any]) -> str | None:
    """Why the stored hand-off ``settings`` send this row to a person, or None."""
    scope = settings.get("out_of_scope") or {}
    name, label = scope.get("output"), scope.get("label")
    if name is not None and label is not None and prediction.get(name) == label:
        return f"{name} is {label!r}: out of scope"
    return reason(prediction, outputs, settings.get("thresholds") or {})


def route(rows: list[dict[str, Any]], outputs: list[Any], meta: Mapping[str, Any]
          ) -> list[dict[str, Any]]:
    """Each row with ``route`` (and ``reason`` when it is ``human``), when the artifact
    holds hand-off settings; the rows unchanged otherwise."""
    settings = meta.get(HANDOFF)
    if not settings:
        return rows
    for row in rows:
        why = handoff_reason(row, outputs, settings)
        row["route"] = "bot" if why is None else "human"
        if why is not None:
            row["reason"] = why
    return rows


def choose_threshold(confidences: np.ndarray, correct: np.ndarray,
                     target_accuracy: float, z: float = 1.645) -> float:
    """The lowest threshold whose answered rows (confidence >= it) reach
    ``target_accuracy``, answering as many rows as possible; 1.0 when none does.

    "Reach" means the Wilson lower bound of their accuracy (``z`` = 1.645: one-sided 95%)
    is at least the target, not the validation accuracy itself: picked on a few hundred
    rows, the plain accuracy overshoots what new rows get. ``z=0`` uses it as measured.
    """
    order = np.argsort(-confidences)
    conf, ok = confidences[order], correct[order].astype(float)
    n = np.arange(1, len(ok) + 1)
    p = np.cumsum(ok) / n  # accuracy of the n most confident rows
    lower = (p + z * z / (2 * n) - z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / (
        1 + z * z / n)
    good = np.flatnonzero(lower >= target_accuracy - 1e-12)
    if len(good) == 0:
        return 1.0
    return float(conf[int(good[-1])])
