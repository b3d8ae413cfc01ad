"""Series rows: a fixed-length row of numbers per sample, read from many columns.

A table whose every row is one series (columns ``t0 … t149`` and a label) is classified
or regressed row by row; input ``type: series`` reads the columns its ``columns`` spec
names (data/columns.py resolves globs and ranges before the encoders are built)::

    row i ──columns, in order──▶ values [L]  ──normalize──▶ float [N, L, 1]

The tensor is ``[N, L, 1]``: a sequence of L scalar steps, the shape of a timeseries
window with one channel, so the rnn and transformer families read it as they read a
window, the cnn family runs 1-D convolutions along it, and mlp flattens it.

``normalize`` (fitted on the training split only):

- ``global`` (default): one mean and standard deviation over every training value: the
  steps keep their relative levels, as a CNN over a signal expects;
- ``per_series``: each row standardised by its own mean and std, at training and at
  prediction time alike (for series whose shape matters and whose level does not);
- ``none``: the values as found.

An empty cell is an error naming the row and the column, unless ``missing:
interpolate``: linear along the row, the nearest value at its ends (a row with no value
at all is still an error).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from layerwise.data.columns import explicit
from layerwise.data.encoder import Encoder, is_missing, no_bad_rows
from layerwise.data.table import Table
from layerwise.errors import ConfigError


class SeriesRowEncoder(Encoder):
    """Columns of numbers → ``[N, L, 1]`` floats, normalised as the module says."""

    kind = "series"

    def __init__(self, cfg: Any, *, output: bool = False) -> None:
        super().__init__(cfg)
        self.mean, self.std = 0.0, 1.0

    @property
    def columns(self) -> list[str]:
        cols = self.cfg.columns
        if not explicit(cols, self.cfg.exclude):
            raise ConfigError(f"input {self.name!r}: its columns {cols!r} are not expanded "
                              "yet; build the data with data.build (which resolves them)")
        return list(cols)

    def read(self, table: Table) -> np.ndarray:
        """The raw cells of this input's columns: an object array ``[N, L]``."""
        return np.stack([table.column(c) for c in self.columns], axis=1)

    def parse(self, col: np.ndarray, table: Table) -> tuple[np.ndarray, np.ndarray, list[str]]:
        n = len(col)
        bad, reasons = no_bad_rows(n)
        if col.dtype.kind in "fiu":
            values = col.astype(np.float64)
        else:
            values = np.full(col.shape, np.nan)
            for (i, j), v in np.ndenumerate(col):
                if is_missing(v):
                    continue
                try:
                    values[i, j] = float(v)
                except (TypeError, ValueError):
                    if not bad[i] and not reasons:
                        reasons.append(self._at(j, f"expected a number; found {v!r}"))
                    bad[i] = True
        bad |= np.isinf(values).any(axis=1)
        missing = np.isnan(values) & ~bad[:, None]
        if missing.any():
            if self.cfg.missing == "error":
                rows = missing.any(axis=1)
                i = int(np.flatnonzero(rows)[0])
                if not bad[:i].any():
                    reasons.insert(0, self._at(int(np.flatnonzero(missing[i])[0]),
                                               "the cell is empty (set missing: interpolate "
                                               f"on input {self.name!r} to fill it)"))
                bad |= rows
            else:
                empty = missing.all(axis=1)
                if empty.any():
                    i = int(np.flatnonzero(empty)[0])
                    if not bad[:i].any():
                        reasons.insert(0, f"input {self.name!r}: every cell of the series "
                                          "is empty; nothing to interpolate")
                    bad |= empty
                values = _interpolate(values, bad)
        if bad.any() and not reasons:
            reasons.append(f"input {self.name!r}: a value is not finite")
        return values, bad, reasons

    def _at(self, j: int, why: str) -> str:
        return f"input {self.name!r}, column {self.columns[j]!r}: {why}"

    def fit(self, values: np.ndarray) -> None:
        if self.cfg.normalize == "global":
            self.mean = float(values.mean())
            self.std = float(values.std()) or 1.0

    def transform(self, values: np.ndarray) -> torch.Tensor:
        x = values.astype(np.float64)
        if self.cfg.normalize == "global":
            x = (x - self.mean) / self.std
        elif self.cfg.normalize == "per_series":
            std = x.std(axis=1, keepdims=True)
            x = (x - x.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1.0)
        return torch.from_numpy(x.astype(np.float32)).unsqueeze(-1)     # [N, L, 1]

    def describe(self) -> dict[str, Any]:
        return {"channels": 1, "lookback": len(self.columns)}

    def state(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "columns": self.columns}

    def load_state(self, state: dict[str, Any]) -> None:
        self.mean, self.std = float(state["mean"]), float(state["std"])

    def reference(self, values: np.ndarray) -> dict[str, Any]:
        return {"count": int(len(values)), "length": int(values.shape[1]),
                "mean": float(values.mean()) if values.size else None,
                "std": float(values.std()) if values.size else None}


def _interpolate(values: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """Each good row's empty cells, linear between its known neighbours."""
    out = values.copy()
    steps = np.arange(values.shape[1])
    for i in np.flatnonzero(np.isnan(values).any(axis=1) & ~bad):
        known = ~np.isnan(values[i])
        out[i] = np.interp(steps, steps[known], values[i, known])
    out[bad] = 0.0
    return out
