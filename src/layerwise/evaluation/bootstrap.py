"""Bootstrap confidence intervals of test metrics (percentile method, Efron 1979).

One test split gives one number per metric; resampling its rows with replacement ``B``
times and recomputing the metric shows how much that number would move on another test set
of the same size. The interval is the 2.5th–97.5th percentile of the resampled values.
The metrics are recomputed here with a few lines of numpy each (accuracy, macro-F1 from
per-class counts; MAE, RMSE, R²) because a thousand calls into scikit-learn would take
longer than the evaluation itself; the test suite checks them against scikit-learn.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from layerwise.errors import ConfigError
from layerwise.models import heads

Metric = Callable[[np.ndarray, np.ndarray], float]


def accuracy(y: np.ndarray, p: np.ndarray) -> float:
    return float((y == p).mean())


def macro_f1(classes: int) -> Metric:
    """Macro-F1 over all ``classes`` (a class with no rows and no predictions scores 0,
    as scikit-learn's ``zero_division=0``): the validation metric's own function."""
    return lambda y, p: heads.macro_f1(y, p, classes)


def mae(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.abs(y - p).mean())


def rmse(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.sqrt(((y - p) ** 2).mean()))


def r2(y: np.ndarray, p: np.ndarray) -> float:
    total = ((y - y.mean()) ** 2).sum()
    return float(1 - ((y - p) ** 2).sum() / total) if total > 0 else float("nan")


def classification_metrics(classes: int) -> dict[str, Metric]:
    return {"accuracy": accuracy, "macro_f1": macro_f1(classes)}


REGRESSION: dict[str, Metric] = {"mae": mae, "rmse": rmse, "r2": r2}


def intervals(y: np.ndarray, pred: np.ndarray, metrics: dict[str, Metric],
              samples: int = 1000, seed: int = 0, confidence: float = 0.95
              ) -> dict[str, dict[str, float]]:
    """Per metric: its value on all rows and the percentile interval over ``samples``
    bootstrap resamples of the rows (seeded: the same call gives the same interval)."""
    if samples < 10:
        raise ConfigError(f"bootstrap needs at least 10 resamples; got {samples}")
    n = len(y)
    if n < 2:
        raise ConfigError(f"bootstrap intervals need at least 2 test rows; got {n}")
    rng = np.random.default_rng(seed)
    values = {k: np.empty(samples) for k in metrics}
    for b in range(samples):
        idx = rng.integers(0, n, n)
        for k, f in metrics.items():
            values[k][b] = f(y[idx], pred[idx])
    lo, hi = 100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2
    return {k: {"value": f(y, pred), "low": float(np.nanpercentile(values[k], lo)),
                "high": float(np.nanpercentile(values[k], hi)), "samples": samples,
                "confidence": confidence}
            for k, f in metrics.items()}
