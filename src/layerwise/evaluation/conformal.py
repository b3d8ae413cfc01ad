"""Split-conformal prediction: sets of classes and intervals of numbers with a coverage
guarantee.

Given ``n`` held-out rows (the validation split) and a target coverage ``1 - α``, split
conformal prediction takes a nonconformity score per row and its quantile at level
``ceil((n + 1)(1 - α)) / n``; on new rows exchangeable with the held-out ones, the set of
answers scoring at most that quantile contains the truth with probability at least
``1 - α`` (Vovk et al. 2005; Angelopoulos & Bates 2021, "A gentle introduction").

- Classes (LAC, Sadinle et al. 2019): score ``1 - p(true class)``; the set holds every
  class with ``p >= 1 - q``. It is the smallest set on average; it may be empty when no
  class is likely enough (that is part of the guarantee: such rows are the uncertain
  ones). ``class_conditional`` fits one quantile per true class (Mondrian conformal), so
  every class, not only the average, gets the coverage.
- Numbers: score ``|y - ŷ|`` in the target's units; the interval is ``ŷ ± q``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from layerwise.errors import ConfigError
from layerwise.inference.calibrated import class_sets

__all__ = ["check_coverage", "class_coverage", "class_sets", "fit_classes", "fit_interval",
           "interval_coverage", "quantile"]


def check_coverage(coverage: float) -> None:
    if not 0 < coverage < 1:
        raise ConfigError(f"conformal coverage must lie strictly between 0 and 1 (e.g. "
                          f"0.9); got {coverage}")


def quantile(scores: np.ndarray, coverage: float, what: str = "the validation split"
             ) -> float:
    """The conformal quantile of ``scores`` for ``coverage`` (finite-sample corrected)."""
    check_coverage(coverage)
    n = len(scores)
    k = math.ceil((n + 1) * coverage - 1e-9)  # the tolerance: (n + 1) * 0.9 in floats
    if k > n:
        need = math.ceil(coverage / (1 - coverage) - 1e-9)
        raise ConfigError(f"conformal coverage {coverage} needs at least {need} held-out "
                          f"rows; {what} has {n}")
    return float(np.sort(scores)[k - 1])


def fit_classes(probs: np.ndarray, labels: np.ndarray, coverage: float,
                class_conditional: bool = False, classes: list[str] | None = None
                ) -> dict[str, Any]:
    """The LAC threshold(s) from probabilities ``[N, C]`` and true labels ``[N]``."""
    scores = 1.0 - probs[np.arange(len(labels)), labels]
    out: dict[str, Any] = {"coverage": coverage, "method": "lac", "rows": int(len(labels)),
                           "class_conditional": class_conditional,
                           "quantile": quantile(scores, coverage)}
    if class_conditional:
        names = classes or [str(i) for i in range(probs.shape[1])]
        out["class_quantiles"] = {
            names[c]: quantile(scores[labels == c], coverage,
                               f"the validation rows of class {names[c]!r}")
            for c in range(probs.shape[1])}
    return out


def fit_interval(y_true: np.ndarray, y_pred: np.ndarray, coverage: float) -> dict[str, Any]:
    """The half-width of the interval ``ŷ ± q`` from held-out targets and predictions."""
    scores = np.abs(np.asarray(y_true, float) - np.asarray(y_pred, float))
    return {"coverage": coverage, "method": "absolute_residual", "rows": int(len(scores)),
            "half_width": quantile(scores, coverage)}


def class_coverage(member: np.ndarray, labels: np.ndarray, names: list[str] | None = None
                   ) -> dict[str, Any]:
    """Empirical coverage and mean set size of sets ``[N, C]`` on true ``labels``, and the
    coverage of each class (what ``class_conditional`` evens out)."""
    hit = member[np.arange(len(labels)), labels]
    names = names or [str(c) for c in range(member.shape[1])]
    per = {names[c]: float(hit[labels == c].mean()) for c in range(member.shape[1])
           if (labels == c).any()}
    return {"coverage": float(hit.mean()), "mean_set_size": float(member.sum(1).mean()),
            "empty_sets": float((member.sum(1) == 0).mean()), "rows": int(len(labels)),
            "per_class": per, "min_class_coverage": min(per.values()) if per else None}


def interval_coverage(y_true: np.ndarray, y_pred: np.ndarray, half_width: float
                      ) -> dict[str, float]:
    """Empirical coverage and width of the intervals ``ŷ ± half_width``."""
    inside = np.abs(np.asarray(y_true, float) - np.asarray(y_pred, float)) <= half_width
    return {"coverage": float(inside.mean()), "mean_width": 2.0 * half_width,
            "rows": int(len(inside))}
