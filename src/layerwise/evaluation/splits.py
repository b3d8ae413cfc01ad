"""The splits of a saved model's own run, rebuilt exactly as training made them.

The stored config rebuilds the data (same sources, seed, split and folds); the data hash
must equal the one recorded at training time, so the validation and test splits are the
same rows. The rows are then encoded with the artifact's own fitted encoders (not ones
refitted by the rebuild), so what is scored is what the model was trained to read.
"""

from __future__ import annotations

from pathlib import Path

from layerwise.data.batching import TensorData
from layerwise.data.build import Dataset, build
from layerwise.errors import ConfigError
from layerwise.inference.predictor import Predictor


def rebuild(pred: Predictor, model_dir: str | Path) -> Dataset:
    """The run's data set, checked against the recorded data hash."""
    ds = build(pred.config)
    recorded = pred.meta.get("lineage", {}).get("data_hash")
    if recorded and recorded != ds.data_hash:
        raise ConfigError(f"the data behind {model_dir} changed since training (hash "
                          f"{ds.data_hash} vs {recorded}); pass a data file to evaluate")
    return ds


def encoded(pred: Predictor, ds: Dataset, split: str, model_dir: str | Path) -> TensorData:
    """Split ``validation`` or ``test`` of ``ds``, encoded by the artifact's schema."""
    raw = ds.raw_validation if split == "validation" else ds.raw_test
    if raw is None or not len(next(iter(raw.values()))):
        hint = ("set data.split.validation above 0 and retrain" if split == "validation"
                else "pass a data file")
        raise ConfigError(f"{model_dir}: the run has no {split} split; {hint}")
    return pred.schema.encode(raw)
