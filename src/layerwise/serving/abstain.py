"""When a prediction goes to a person instead of the caller.

A row abstains when its confidence — the probability of the chosen class of each
category or binary output — is below the model's threshold, or when a conformal
prediction set (``<output>_set``, which ``predict`` adds once ``layerwise calibrate
--conformal`` has fitted one) holds more than one label, or none. :func:`choose_threshold`
picks the threshold on validation data for a target accuracy on the answered rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def confidence(prediction: dict[str, Any], outputs: list[Any]) -> float | None:
    """The lowest confidence over the classifying outputs of one prediction."""
    confs = []
    for enc in outputs:
        p = prediction.get(f"{enc.name}_probability")
        if not isinstance(p, int | float):
            continue
        confs.append(float(p) if enc.kind == "category" else max(float(p), 1 - float(p)))
    return min(confs) if confs else None


def reason(prediction: dict[str, Any], outputs: list[Any], threshold: float | None
           ) -> str | None:
    """Why this prediction should abstain, or None to answer it."""
    for key, value in prediction.items():
        if key.endswith("_set") and isinstance(value, list | tuple) and len(value) != 1:
            return f"the conformal set {key!r} holds {len(value)} labels"  # 0: none fits
    conf = confidence(prediction, outputs)
    if threshold is not None and conf is not None and conf < threshold:
        return f"confidence {conf:.3f} is below the threshold {threshold:g}"
    return None


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
