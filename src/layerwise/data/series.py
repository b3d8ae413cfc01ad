"""Time series: windows from a time-indexed table, scaled with training-split statistics.

One table is one series, a row per time step. It becomes samples (windows)::

    rows ──sort by `time`, check duplicates / gaps / NaN (policies below)──▶ series [S, k]
        (channel 0: the forecast column; channels 1..: the exogenous columns)
    a forecast origin t ──▶ window  series[t-L : t]     [L, k]   (L = lookback)
                          ──▶ target  series[t : t+H, 0]  [H]      (H = horizon)
                          ──▶ naive   the seasonal-naive forecast from the window (baseline)

The split is chronological: the last ``test_steps`` steps are the test part, the
``validation_steps`` before them the validation part, the rest trains. A window belongs to
the part its targets fall in (its history may reach back into earlier parts: that history
is known at forecast time). Scalers are fitted on the training steps only.

``relative: true`` (default) expresses a window's target channel, its targets and the
baseline as changes from the window's last observed value, divided by the standard
deviation of such changes in training. A trending series (CO2) then never shows the model
a level it has not seen; predictions are shifted back by that last value on decoding.

Awkward input (docs/decisions.md): rows in any order are sorted by time; two rows with
the same time are an error naming both; a missing time step (a gap) is an error naming
the row after it unless ``gaps: interpolate``; an empty cell is an error naming the row and
column unless ``missing: interpolate`` (linear in time; at the ends the nearest value).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

import numpy as np
import torch

from layerwise.data.batching import TensorData
from layerwise.data.dataset import Dataset
from layerwise.data.encoder import Encoder, is_missing, unlinked
from layerwise.data.table import Table
from layerwise.errors import ConfigError, DataError

# --------------------------------------------------------------------------- the time axis


def _parse_times(col: np.ndarray, table: Table, name: str) -> tuple[np.ndarray, str]:
    """Times as numbers: (values, unit) with unit "number" or a numpy datetime unit."""
    if col.dtype.kind in "iuf":
        v = col.astype(np.float64)
        bad = np.flatnonzero(~np.isfinite(v))
        if len(bad):
            raise DataError(f"{table.where(int(bad[0]), name)}: the time is empty or not finite")
        return v, "number"
    if col.dtype.kind == "M":  # datetime64 (a DataFrame's dates)
        bad = np.flatnonzero(np.isnat(col))
        if len(bad):
            raise DataError(f"{table.where(int(bad[0]), name)}: the time is empty")
        return col.astype("datetime64[s]").astype(np.int64).astype(np.float64), "s"
    texts = []
    for i, v in enumerate(col):
        if is_missing(v):
            raise DataError(f"{table.where(i, name)}: the time is empty")
        texts.append(str(v).strip())
    try:
        return np.array([float(s) for s in texts]), "number"
    except ValueError:
        pass
    out = np.empty(len(col), dtype="datetime64[s]")
    for i, s in enumerate(texts):
        try:
            out[i] = np.datetime64(s.replace(" ", "T")[:19], "s")
        except ValueError:
            raise DataError(f"{table.where(i, name)}: expected a date (YYYY-MM-DD, YYYY-MM, "
                            f"YYYY-MM-DD HH:MM:SS) or a number; found {col[i]!r}") from None
    return out.astype(np.int64).astype(np.float64), "s"


def _calendar(seconds: np.ndarray) -> tuple[np.ndarray, str]:
    """Dates on the first (or last) day of each month count in months, midnights in days."""
    t = seconds.astype(np.int64).astype("datetime64[s]")
    days = t.astype("datetime64[D]")
    if (t == days).all():
        months = days.astype("datetime64[M]")
        first = (days == months).all()
        last = (days == (months + 1).astype("datetime64[D]") - 1).all()
        if first or last:
            return months.astype(np.int64).astype(np.float64), "M-end" if last and not first \
                else "M"
        return days.astype(np.int64).astype(np.float64), "D"
    return seconds, "s"


def render_times(ordinals: np.ndarray, unit: str) -> list[Any]:
    """Ordinals back to what the table held: numbers, or ISO dates / date-times."""
    if unit == "number":
        return [int(x) if float(x).is_integer() else float(x) for x in ordinals]
    o = ordinals.astype(np.int64)
    if unit == "M":
        return [str(d) for d in o.astype("datetime64[M]").astype("datetime64[D]")]
    if unit == "M-end":
        return [str(d) for d in (o + 1).astype("datetime64[M]").astype("datetime64[D]") - 1]
    return [str(d) for d in o.astype(f"datetime64[{unit}]")]


# --------------------------------------------------------------------------- cleaning


def clean(table: Table, cfg: Any, target: str) -> dict[str, Any]:
    """Sorted, checked, gap-free series ``[S, k]`` with its time ordinals and unit."""
    if len(table) == 0:
        raise DataError(f"{table.origin}: the table has no rows")
    raw_t, unit = _parse_times(table.column(cfg.time), table, cfg.time)
    if unit != "number":
        raw_t, unit = _calendar(raw_t)
    order = np.argsort(raw_t, kind="stable")
    t = raw_t[order]
    diffs = np.diff(t)
    dup = np.flatnonzero(diffs == 0)
    if len(dup):
        a, b = int(order[dup[0]]), int(order[dup[0] + 1])
        raise DataError(f"{table.where(b, cfg.time)}: the same time as {table.unit} "
                        f"{int(table.lines[a])} ({table.column(cfg.time)[b]!r}); a series "
                        "has one row per time step")
    step = Counter(diffs.tolist()).most_common(1)[0][0] if len(diffs) else 1.0
    ratio = diffs / step
    off = np.flatnonzero(np.abs(ratio - np.round(ratio)) > 1e-6)
    if len(off):
        i = int(order[off[0] + 1])
        raise DataError(f"{table.where(i, cfg.time)}: irregular time step (the usual step is "
                        f"{step:g}, this row is {diffs[off[0]]:g} after the previous one)")
    columns = [target, *cfg.exogenous]
    values = np.empty((len(t), len(columns)))
    for c, name in enumerate(columns):
        values[:, c] = _numbers(table, name, order)
    missing = np.isnan(values)
    if missing.any() and cfg.missing == "error":
        j, c = (int(x[0]) for x in np.nonzero(missing))
        raise DataError(f"{table.where(int(order[j]), columns[c])}: the value is empty (set "
                        f"missing: interpolate on input {cfg.name!r} to interpolate it)")
    gaps = np.flatnonzero(np.round(ratio) > 1)
    if len(gaps) and cfg.gaps == "error":
        g = int(gaps[0])
        raise DataError(f"{table.where(int(order[g + 1]), cfg.time)}: a gap in the series: "
                        f"{int(round(ratio[g])) - 1} missing time step(s) before this row "
                        f"(set gaps: interpolate on input {cfg.name!r} to fill them)")
    pos = np.round((t - t[0]) / step).astype(np.int64)
    n = int(pos[-1]) + 1
    grid = np.full((n, len(columns)), np.nan)
    grid[pos] = values
    filled = int(np.isnan(grid).any(axis=1).sum())
    for c, name in enumerate(columns):
        known = ~np.isnan(grid[:, c])
        if not known.any():
            raise DataError(f"{table.origin}, column {name!r}: no values")
        grid[:, c] = np.interp(np.arange(n), np.flatnonzero(known), grid[known, c])
    return {"series": grid, "times": t[0] + step * np.arange(n), "step": step, "unit": unit,
            "filled_steps": filled, "gap_steps": n - len(t)}


def _numbers(table: Table, name: str, order: np.ndarray) -> np.ndarray:
    col = table.column(name)[order]
    if col.dtype.kind in "iufb":
        v = col.astype(np.float64)
    else:
        v = np.full(len(col), np.nan)
        for j, x in enumerate(col):
            if is_missing(x):
                continue
            try:
                v[j] = float(x)
            except (TypeError, ValueError):
                raise DataError(f"{table.where(int(order[j]), name)}: expected a number; "
                                f"found {x!r}") from None
    inf = np.flatnonzero(np.isinf(v))
    if len(inf):
        raise DataError(f"{table.where(int(order[inf[0]]), name)}: expected a finite number; "
                        "found infinity")
    return v


# --------------------------------------------------------------------------- windows


def windows(series: np.ndarray, origins: np.ndarray, lookback: int, horizon: int,
            season: int) -> dict[str, Any]:
    """Raw (unscaled) windows at the given forecast origins."""
    idx = origins[:, None] + np.arange(-lookback, 0)[None, :]          # [N, L]
    fut = origins[:, None] + np.arange(horizon)[None, :]                # [N, H]
    naive = origins[:, None] - season + (np.arange(horizon) % season)[None, :]
    y = series[:, 0]
    return {"x": series[idx], "target": {"values": y[fut], "naive": y[naive],
                                         "last": y[origins - 1]}}


class SeriesEncoder(Encoder):
    """Windows ``[N, L, k]`` (raw) → scaled float windows; see the module docstring."""

    kind = "timeseries"

    def __init__(self, cfg: Any, *, output: bool = False) -> None:
        super().__init__(cfg)
        self.forecast: ForecastEncoder | None = None  # linked by the Schema
        self.mean: list[float] = []
        self.std: list[float] = []

    @property
    def columns(self) -> list[str]:
        if self.forecast is None:
            raise unlinked(self, "forecast output")
        return [self.forecast.name, *self.cfg.exogenous]

    def parse(self, col: np.ndarray, table: Table) -> tuple[np.ndarray, np.ndarray, list[str]]:
        raise DataError(f"input {self.name!r} is a timeseries: it reads whole tables, not "
                        "single rows")

    def fit(self, values: np.ndarray) -> None:  # values: the training steps [S, k]
        self.mean = values.mean(axis=0).tolist()
        self.std = [float(s) or 1.0 for s in values.std(axis=0)]

    def transform(self, values: np.ndarray) -> torch.Tensor:
        if self.forecast is None:
            raise unlinked(self, "forecast output")
        x = (values - np.array(self.mean)) / np.array(self.std)        # [N, L, k]
        fc = self.forecast
        base = values[:, -1:, 0] if self.cfg.relative else fc.shift     # [N, 1] or scalar
        x[:, :, 0] = (values[:, :, 0] - base) / fc.scale
        return torch.from_numpy(x.astype(np.float32))

    def describe(self) -> dict[str, Any]:
        return {"channels": 1 + len(self.cfg.exogenous), "lookback": self.cfg.lookback}

    def state(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std}

    def load_state(self, state: dict[str, Any]) -> None:
        self.mean, self.std = list(state["mean"]), list(state["std"])

    def reference(self, values: np.ndarray) -> dict[str, Any]:
        return {"steps": int(len(values)), "mean": self.mean, "std": self.std,
                "columns": self.columns}


class ForecastEncoder(Encoder):
    """Targets ``{"values": [N, H], "naive": [N, H]}``, scaled; decodes back to units.

    ``mase_scale`` is the in-sample mean absolute error of the seasonal-naive forecast on
    the training steps (Hyndman & Koehler's MASE denominator).
    """

    kind = "forecast"

    def __init__(self, cfg: Any, *, output: bool = True) -> None:
        super().__init__(cfg)
        self.source: SeriesEncoder | None = None
        self.shift, self.scale, self.mase_scale = 0.0, 1.0, 1.0

    def link(self, inputs: dict[str, Encoder]) -> None:
        src = inputs[self.cfg.input]
        if not isinstance(src, SeriesEncoder):
            raise ConfigError(f"output {self.name!r} forecasts {self.cfg.input!r}, which is "
                              f"a {src.kind} input, not a series")
        self.source, src.forecast = src, self

    @property
    def size(self) -> int:
        return int(self.cfg.horizon)

    @property
    def season(self) -> int:
        return int(self.cfg.season or 1)

    def parse(self, col: np.ndarray, table: Table) -> tuple[np.ndarray, np.ndarray, list[str]]:
        raise DataError(f"output {self.name!r} is a forecast: it reads whole tables")

    def fit(self, values: np.ndarray) -> None:  # values: the training steps of the target [S]
        h, m = self.size, self.season
        if self.source is not None and self.source.cfg.relative:
            # changes from the last observed value, over every horizon, in training
            lags = [values[i + 1:] - values[:-i - 1] for i in range(min(h, len(values) - 1))]
            changes = np.concatenate(lags) if lags else np.zeros(1)
            self.shift, self.scale = 0.0, float(np.sqrt((changes ** 2).mean())) or 1.0
        else:
            self.shift, self.scale = float(values.mean()), float(values.std()) or 1.0
        naive = np.abs(values[m:] - values[:-m]) if len(values) > m else np.zeros(0)
        self.mase_scale = float(naive.mean()) if len(naive) and naive.mean() > 0 else 1.0

    def _base(self, last: np.ndarray) -> np.ndarray:
        relative = self.source is not None and self.source.cfg.relative
        return last[:, None] if relative else np.full((len(last), 1), self.shift)

    def transform(self, values: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:  # type: ignore[override]
        base = self._base(values["last"])
        return {k: torch.from_numpy(((values[k] - base) / self.scale).astype(np.float32))
                for k in ("values", "naive")}

    def decode(self, out: torch.Tensor, last: np.ndarray) -> np.ndarray:
        """Model outputs ``[N, H]`` → forecasts in the target's units."""
        return out.float().numpy().astype(np.float64) * self.scale + self._base(last)

    def state(self) -> dict[str, Any]:
        return {"shift": self.shift, "scale": self.scale, "mase_scale": self.mase_scale}

    def load_state(self, state: dict[str, Any]) -> None:
        self.shift, self.scale = state["shift"], state["scale"]
        self.mase_scale = state["mase_scale"]


# --------------------------------------------------------------------------- building


def split_steps(n: int, cfg: Any, split: Any) -> tuple[int, int]:
    """(validation, test) step counts: the input's, else data.split's shares of the series."""
    if cfg.test_steps or cfg.validation_steps:
        return cfg.validation_steps, cfg.test_steps
    return int(round(n * split.validation)), int(round(n * split.test))


def parts(cleaned: dict[str, Any], cfg: Any, out_cfg: Any, split: Any
          ) -> dict[str, np.ndarray]:
    """Forecast origins per part (train: every ``stride``; validation, test: every step)."""
    s, lb, h = len(cleaned["series"]), cfg.lookback, out_cfg.horizon
    val, test = split_steps(s, cfg, split)
    n_train = s - val - test
    for part, steps in (("validation", val), ("test", test)):
        if 0 < steps < h:
            raise DataError(f"input {cfg.name!r}: the {part} part has {steps} steps, fewer "
                            f"than the horizon {h}; no window fits in it")
    if n_train < lb + h:
        raise DataError(f"input {cfg.name!r}: the training part has {n_train} steps; a window "
                        f"needs lookback + horizon = {lb + h} (the series has {s} steps, "
                        f"{val} validation and {test} test)")
    return {"train": np.arange(lb, n_train - h + 1, cfg.stride),
            "validation": np.arange(n_train, n_train + val - h + 1) if val else
            np.arange(0),
            "test": np.arange(s - test, s - h + 1) if test else np.arange(0),
            "n_train": np.array([n_train])}


def build_series(cfg: Any, schema: Any, tables: dict[str, Table]) -> Any:
    """The Dataset of a forecasting config (called by ``data.build``)."""
    if set(tables) != {"all"}:
        raise DataError("a timeseries reads one table; hold out its end with the input's "
                        "test_steps / validation_steps instead of separate files")
    enc, fc = schema.series[0], schema.outputs[0]
    cleaned = clean(tables["all"], enc.cfg, fc.name)
    series = cleaned["series"]
    origins = parts(cleaned, enc.cfg, fc.cfg, cfg.data.split)
    n_train = int(origins.pop("n_train")[0])
    fc.fit(series[:n_train, 0])
    enc.fit(series[:n_train])
    raw, encoded = {}, {}
    for part, o in origins.items():
        if len(o) == 0:
            encoded[part] = None
            continue
        w = windows(series, o, enc.cfg.lookback, fc.size, fc.season)
        raw[part] = {enc.name: w["x"], fc.name: w["target"]}
        encoded[part] = schema.encode(raw[part])
    h = hashlib.sha256(np.ascontiguousarray(series).tobytes())
    h.update(np.ascontiguousarray(cleaned["times"]).tobytes())
    n_val, n_test = split_steps(len(series), enc.cfg, cfg.data.split)
    info = {"source": cfg.data.dataset or cfg.data.path,
            "rows": {k: (len(v) if v is not None else 0) for k, v in encoded.items()},
            "steps": {"train": n_train, "validation": n_val, "test": n_test,
                      "total": len(series)},
            "first_time": render_times(cleaned["times"][:1], cleaned["unit"])[0],
            "last_time": render_times(cleaned["times"][-1:], cleaned["unit"])[0],
            "gap_steps_filled": cleaned["gap_steps"],
            "steps_interpolated": cleaned["filled_steps"], "skipped_bad_rows": 0}
    reference = {enc.name: {"type": enc.kind, **enc.reference(series[:n_train])}}
    return Dataset(schema, encoded["train"], encoded["validation"], encoded["test"],
                   h.hexdigest()[:16], info, reference, raw_test=raw.get("test"),
                   raw_train=raw.get("train"))


def encode_table(schema: Any, table: Table, *, targets: bool) -> tuple[Any, dict[str, Any]]:
    """Windows of a new table with a fitted schema.

    With ``targets``: every origin whose horizon lies in the table (for evaluation).
    Without: one window, the last ``lookback`` steps, to forecast what follows the table.
    Returns the TensorData and ``{"last": [N], "times": [N][H]}`` for decoding.
    """
    enc, fc = schema.series[0], schema.outputs[0]
    cleaned = clean(table, enc.cfg, fc.name)
    series, lb, h = cleaned["series"], enc.cfg.lookback, fc.size
    need = lb + (h if targets else 0)
    if len(series) < need:
        raise DataError(f"{table.origin}: {len(series)} time steps; input {enc.name!r} needs "
                        f"at least {need} (lookback {lb}" + (f" + horizon {h})" if targets
                                                              else ")"))
    if targets:
        origins = np.arange(lb, len(series) - h + 1)
    else:
        origins = np.array([len(series)])
        series = np.concatenate([series, np.zeros((h, series.shape[1]))])  # unknown future
    w = windows(series, origins, lb, h, fc.season)
    data = TensorData(schema.encode_inputs({enc.name: w["x"]}),
                      schema.encode_targets({fc.name: w["target"]}) if targets else {})
    t0, step = cleaned["times"][0], cleaned["step"]
    times = [render_times(t0 + step * (o + np.arange(h)), cleaned["unit"]) for o in origins]
    return data, {"last": w["target"]["last"], "times": times}
