"""Prediction for forecasting and tagging models (called by ``Predictor.predict``).

A forecasting model reads a table holding the history (at least ``lookback`` time steps)
and returns one dict: ``{target: [the next horizon values], target_time: [their times]}``.
A tagging model returns, per text, ``{output: {"tokens", "tags", "probabilities"}}``.
"""

from __future__ import annotations

from typing import Any

from layerwise.data.batching import TensorData
from layerwise.data.series import ForecastEncoder, encode_table
from layerwise.data.table import Table
from layerwise.data.tags import TagsEncoder
from layerwise.errors import ConfigError


def tags_output(schema: Any) -> TagsEncoder | None:
    found = [e for e in schema.outputs if isinstance(e, TagsEncoder)]
    return found[0] if found else None


def forecast(predictor: Any, table: Table) -> list[dict[str, Any]]:
    """What follows the table: the next ``horizon`` values in the target's units."""
    enc = predictor.schema.outputs[0]
    if not isinstance(enc, ForecastEncoder):
        raise ConfigError(f"output {enc.name!r} is not a forecast; this model does not "
                          "forecast a series")
    data, extra = encode_table(predictor.schema, table, targets=False)
    values = enc.decode(predictor.forward(data)[enc.name], extra["last"])
    return [{enc.name: [float(v) for v in row], f"{enc.name}_time": times}
            for row, times in zip(values, extra["times"], strict=True)]


def tag(predictor: Any, data: TensorData, table: Table, batch_size: int) -> list[dict[str, Any]]:
    """The most likely tag of every token of each text, and the decoded values of the
    model's other outputs (a joint model: e.g. intent, entities and sentiment)."""
    enc = tags_output(predictor.schema)
    if enc is None:
        raise ConfigError("this model has no tags output: it does not tag tokens")
    outs = predictor.forward(data, min(batch_size, 256))
    rows = [{enc.name: d} for d in enc.decode(outs.pop(enc.name),  # [N, T, n]
                                              table.column(enc.cfg.input))]
    if outs:  # the other outputs, decoded as any model's
        for row, other in zip(rows, predictor.decode(outs, data.inputs), strict=True):
            row.update(other)
    return rows
