"""What ``layerwise calibrate`` stored, applied at prediction time.

The artifact's ``layerwise.json`` may hold, per output name:

- ``calibration.<output>.temperature``: the logits are divided by it before decoding, so
  the probabilities ``predict`` returns are the temperature-scaled ones (the predicted
  class is unchanged);
- ``conformal.<output>``: a split-conformal fit (see :mod:`layerwise.evaluation.conformal`);
  ``predict`` then adds ``<output>_set`` (the classes whose probability reaches
  ``1 - quantile``, most likely first) for a classifier, or ``<output>_interval``
  (``[low, high]`` in the target's units) for a number.

Both are fitted on the run's validation split by :mod:`layerwise.evaluation.calibrate`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from layerwise.errors import ArtifactError


def temperature(meta: Mapping[str, Any], name: str) -> float:
    """The stored temperature of output ``name`` (1 when none is stored)."""
    entry = (meta.get("calibration") or {}).get(name) or {}
    t = entry.get("temperature", 1.0)
    if not isinstance(t, int | float) or isinstance(t, bool) or not np.isfinite(t) or t <= 0:
        raise ArtifactError(f"layerwise.json: calibration.{name}.temperature must be a "
                            f"positive number; got {t!r}")
    return float(t)


def scale(meta: Mapping[str, Any], outputs: dict[str, torch.Tensor]
          ) -> dict[str, torch.Tensor]:
    """``outputs`` with each calibrated output's logits divided by its temperature."""
    names = [n for n in (meta.get("calibration") or {}) if n in outputs]
    if not names:
        return outputs
    return {k: v / temperature(meta, k) if k in names else v for k, v in outputs.items()}


def class_sets(probs: np.ndarray, fitted: Mapping[str, Any], classes: list[str]
               ) -> np.ndarray:
    """Membership ``[N, C]`` (bool) of each class in each row's prediction set."""
    if fitted.get("class_conditional"):
        q: Any = np.array([fitted["class_quantiles"][c] for c in classes])[None, :]
    else:
        q = fitted["quantile"]
    return (1.0 - probs) <= q + 1e-12  # the held-out row at the quantile is covered


def set_column(enc: Any, probs: np.ndarray, meta: Mapping[str, Any]) -> dict[str, list]:
    """``<output>_set`` per row, most likely class first; empty without a conformal fit."""
    fitted = (meta.get("conformal") or {}).get(enc.name)
    if not fitted:
        return {}
    labels = [str(v) for v in (enc.vocab if hasattr(enc, "vocab") else enc.labels())]
    member = class_sets(probs, fitted, labels)
    order = np.argsort(-probs, axis=1)
    return {f"{enc.name}_set": [[labels[j] for j in row if m[j]]
                                for row, m in zip(order, member, strict=True)]}


def interval_column(name: str, values: list[float], meta: Mapping[str, Any]
                    ) -> dict[str, list]:
    """``<output>_interval`` = ``[ŷ - q, ŷ + q]`` per row; empty without a conformal fit."""
    fitted = (meta.get("conformal") or {}).get(name)
    if not fitted:
        return {}
    q = float(fitted["half_width"])
    return {f"{name}_interval": [[v - q, v + q] for v in values]}


def conformal_columns(enc: Any, out: torch.Tensor, cols: Mapping[str, list],
                      meta: Mapping[str, Any]) -> dict[str, list]:
    """The conformal column of one decoded output (see the module docstring), if fitted:
    ``out`` is its (temperature-scaled) model output, ``cols`` its decoded columns."""
    if not (meta.get("conformal") or {}).get(enc.name):
        return {}
    if enc.kind == "category":
        return set_column(enc, out.float().softmax(dim=1).numpy(), meta)
    if enc.kind == "binary":
        p = out.float().sigmoid().numpy()
        return set_column(enc, np.stack([1 - p, p], axis=1), meta)
    if enc.kind == "numeric":
        return interval_column(enc.name, cols[enc.name], meta)
    raise ArtifactError(f"layerwise.json: conformal.{enc.name} is stored, but output "
                        f"{enc.name!r} of type {enc.kind!r} has no conformal decoding")
