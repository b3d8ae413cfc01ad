"""The encoded splits of a data set: what ``data.build`` (and ``data.series.build_series``
for a forecasting config) return."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from layerwise.data.batching import TensorData

if TYPE_CHECKING:  # the Schema is built in data/build.py, which imports this module
    from layerwise.data.build import Schema


@dataclass
class Dataset:
    """Encoded splits plus everything needed to describe them."""

    schema: Schema
    train: TensorData
    validation: TensorData | None
    test: TensorData | None
    data_hash: str
    info: dict[str, Any] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=dict)
    raw_test: dict[str, np.ndarray] | None = None
    raw_train: dict[str, np.ndarray] | None = None  # for baselines on the same split
    raw_validation: dict[str, np.ndarray] | None = None  # calibration (evaluation/)
