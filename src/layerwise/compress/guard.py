"""The accuracy guard: a compressed child may lose at most P points of the main metric.

Parent and child are scored on the same rows, the validation split recorded in the run
(rebuilt from the stored config; the data hash must match the one recorded at training
time), or on a labelled file given instead. Each is scored as it will run: the child
through its own backend (an int8 child through its int8 graph), not through a stand-in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from layerwise.data.batching import TensorData
from layerwise.data.build import Dataset, build, encode_rows
from layerwise.errors import ConfigError, LayerwiseError
from layerwise.evaluation.metrics import evaluate_outputs
from layerwise.inference.predictor import Predictor

# a main metric per output kind: (metric, higher is better)
MAIN = {"category": ("accuracy", True), "binary": ("accuracy", True),
        "numeric": ("r2", True)}


class AccuracyGuardError(LayerwiseError, ValueError):
    """The accuracy guard refused a compressed model (the message gives both figures)."""


def validation_data(pred: Predictor, data: str | Path | None = None,
                    ds: Dataset | None = None) -> TensorData:
    """The rows the guard scores on: ``data`` (a labelled file) or the run's validation
    split (its test split when it had none), encoded with the parent's fitted schema;
    ``ds``: the run's data, when already built."""
    if data is not None:
        return encode_rows(pred.schema, pred.to_table(data), targets=True)[0]
    ds = ds if ds is not None else build(pred.config)
    recorded = pred.meta.get("lineage", {}).get("data_hash")
    if recorded and recorded != ds.data_hash:
        raise ConfigError(f"the data behind {pred.artifact.path} changed since training "
                          f"(hash {ds.data_hash} vs {recorded}); pass --data to score on")
    raw = ds.raw_validation if ds.raw_validation is not None else ds.raw_test
    if raw is None or not len(next(iter(raw.values()))):
        raise ConfigError(f"{pred.artifact.path}: the run has neither a validation nor a "
                          "test split; pass --data to score on")
    return pred.schema.encode(raw)


def main_metric(pred: Predictor, metric: str | None = None) -> str:
    """The metric the guard compares: ``metric`` if given, else by the first output's
    kind (accuracy for classes, R² for numbers)."""
    kind = pred.schema.outputs[0].kind
    if metric is not None:
        return metric
    if kind not in MAIN:
        raise ConfigError(f"the accuracy guard scores outputs of type "
                          f"{', '.join(sorted(MAIN))}; this model predicts {kind!r}")
    return MAIN[kind][0]


def score(pred: Predictor, data: TensorData, metric: str) -> float:
    """``metric`` of ``pred`` (through its backend) on ``data``, in points (×100)."""
    metrics: dict[str, Any] = evaluate_outputs(pred.schema, pred.forward(data, 512),
                                               data.targets)
    if len(pred.schema.outputs) > 1:
        metrics = metrics[pred.schema.outputs[0].name]
    if metric not in metrics or not isinstance(metrics[metric], int | float):
        names = sorted(k for k, v in metrics.items() if isinstance(v, int | float))
        raise ConfigError(f"unknown metric {metric!r} for the guard; valid: "
                          f"{', '.join(names)}")
    return 100.0 * float(metrics[metric])


def check(metric: str, parent: float, child: float, max_drop: float, what: str) -> None:
    """Refuse a child that loses more than ``max_drop`` points."""
    if parent - child > max_drop:
        raise AccuracyGuardError(f"accuracy guard: {what} drops {metric} from {parent:.2f} to "
                         f"{child:.2f} ({parent - child:.2f} points > --max-drop "
                         f"{max_drop:g}); nothing written")
