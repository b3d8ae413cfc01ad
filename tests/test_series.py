"""Time series: cleaning (order, duplicates, gaps, NaN), chronological windows, forecasting
end to end (train, metrics, save/load, predict), and bad input naming its row."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import layerwise as lw
from layerwise.config import parse
from layerwise.data.build import build
from layerwise.data.series import clean, windows
from layerwise.data.table import Table
from layerwise.errors import ConfigError, DataError
from tests.model_helpers import in_memory_and_loaded

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def months(n: int, start: int = 2000) -> list[str]:
    return [f"{start + i // 12}-{i % 12 + 1:02d}-01" for i in range(n)]


def seasonal(n: int = 120) -> list[float]:
    # a trend plus a yearly cycle: what seasonal naive gets only partly right
    return [10 + 0.08 * i + 2 * math.sin(2 * math.pi * i / 12) for i in range(n)]


def write(path: Path, times: list[Any], values: list[Any], extra: dict | None = None) -> Path:
    cols = {"month": times, "y": values, **(extra or {})}
    lines = [",".join(cols)] + [",".join("" if v is None else str(v) for v in row)
                                for row in zip(*cols.values())]
    path.write_text("\n".join(lines) + "\n")
    return path


def config(path: Path, **inp: Any) -> dict[str, Any]:
    return {"name": "series", "seed": 0, "data": {"path": str(path)},
            "inputs": [{"name": "history", "type": "timeseries", "time": "month",
                        "lookback": 12, "test_steps": 12, "validation_steps": 12, **inp}],
            "outputs": [{"name": "y", "type": "forecast", "input": "history", "horizon": 3,
                         "season": 12}],
            "model": {"family": "rnn", "cell": "lstm", "hidden": 16},
            "train": {"epochs": 30, "batch_size": 16, "progress": "quiet", "threads": 1,
                      "optimizer": {"lr": 0.01}}}


def cfg_in(**kw: Any) -> Any:
    c = parse(config(Path("x.csv"), **kw))
    return c.inputs[0]


def table(times: list[Any], values: list[Any]) -> Table:
    return Table({"month": np.array(times, dtype=object), "y": np.array(values, dtype=object)},
                 "s.csv", np.arange(2, len(times) + 2), unit="line")


# ------------------------------------------------------------------------- cleaning


def test_rows_are_sorted_by_time_and_months_are_recognised() -> None:
    t = months(5)
    out = clean(table([t[2], t[0], t[1], t[4], t[3]], [3, 1, 2, 5, 4]), cfg_in(), "y")
    assert out["series"][:, 0].tolist() == [1, 2, 3, 4, 5]
    assert out["unit"] == "M" and out["step"] == 1


def test_numeric_time_column() -> None:
    out = clean(table([10, 20, 30], [1, 2, 3]), cfg_in(), "y")
    assert out["unit"] == "number" and out["step"] == 10


def test_duplicate_time_names_both_rows() -> None:
    with pytest.raises(DataError, match=r"s.csv, line 4, column 'month': the same time as "
                                        r"line 2"):
        clean(table(["2000-01-01", "2000-02-01", "2000-01-01"], [1, 2, 3]), cfg_in(), "y")


def test_a_gap_is_an_error_naming_the_row_after_it() -> None:
    t = months(6)
    del t[3]  # April missing
    with pytest.raises(DataError, match=r"line 5, column 'month': a gap in the series: 1 "
                                        r"missing time step\(s\).*gaps: interpolate"):
        clean(table(t, [1, 2, 3, 5, 6]), cfg_in(), "y")


def test_gaps_interpolate_fills_the_missing_steps_linearly() -> None:
    t = months(6)
    del t[2:4]
    out = clean(table(t, [1, 2, 5, 6]), cfg_in(gaps="interpolate"), "y")
    assert out["series"][:, 0].tolist() == [1, 2, 3, 4, 5, 6]
    assert out["gap_steps"] == 2


def test_an_empty_value_is_an_error_naming_row_and_column() -> None:
    with pytest.raises(DataError, match=r"line 3, column 'y': the value is empty.*missing: "
                                        r"interpolate"):
        clean(table(months(4), [1, "", 3, 4]), cfg_in(), "y")
    with pytest.raises(DataError, match=r"line 3, column 'y': the value is empty"):
        clean(table(months(4), [1, float("nan"), 3, 4]), cfg_in(), "y")


def test_missing_interpolate_fills_inside_and_holds_the_ends() -> None:
    out = clean(table(months(5), ["", 2, "", 4, "nan"]), cfg_in(missing="interpolate"), "y")
    assert out["series"][:, 0].tolist() == [2, 2, 3, 4, 4]


@pytest.mark.parametrize("times,values,match", [
    (["2000-01-01", "soon"], [1, 2], r"line 3, column 'month': expected a date"),
    (["2000-01-01", ""], [1, 2], r"line 3, column 'month': the time is empty"),
    (months(2), [1, "abc"], r"line 3, column 'y': expected a number; found 'abc'"),
    (months(2), [1, "inf"], r"line 3, column 'y': expected a finite number"),
    ([1, 2, 3.5], [1, 2, 3], r"line 4, column 'month': irregular time step"),
])
def test_bad_cells_name_their_row(times: list, values: list, match: str) -> None:
    with pytest.raises(DataError, match=match):
        clean(table(times, values), cfg_in(), "y")


def test_windows_and_the_seasonal_naive_baseline() -> None:
    s = np.arange(30, dtype=float)[:, None]
    w = windows(s, np.array([12, 20]), lookback=12, horizon=3, season=12)
    assert w["x"][0, :, 0].tolist() == list(range(12))
    assert w["target"]["values"].tolist() == [[12, 13, 14], [20, 21, 22]]
    assert w["target"]["naive"].tolist() == [[0, 1, 2], [8, 9, 10]]  # a year earlier
    assert w["target"]["last"].tolist() == [11, 19]


# ------------------------------------------------------------------------- building


def test_split_is_chronological_and_scalers_see_training_steps_only(tmp_path: Path) -> None:
    y = seasonal(120)
    cfg = parse(config(write(tmp_path / "s.csv", months(120), y), relative=False))
    ds = build(cfg)
    assert ds.info["steps"] == {"train": 96, "validation": 12, "test": 12, "total": 120}
    # test windows forecast the last 12 steps: origins 108..117 (horizon 3)
    assert ds.test is not None and len(ds.test) == 10
    assert ds.raw_test["y"]["values"][-1].tolist() == pytest.approx(y[-3:])
    enc = ds.schema.series[0]
    assert enc.mean[0] == pytest.approx(np.mean(y[:96]))  # not the whole series' mean
    assert ds.schema.outputs[0].shift == pytest.approx(np.mean(y[:96]))


def test_too_short_a_series_says_how_many_steps_it_needs(tmp_path: Path) -> None:
    cfg = parse(config(write(tmp_path / "s.csv", months(30), seasonal(30))))
    with pytest.raises(DataError, match=r"training part has 6 steps; a window needs "
                                        r"lookback \+ horizon = 15"):
        build(cfg)


def test_config_rules_for_forecasting(tmp_path: Path) -> None:
    base = config(tmp_path / "s.csv")
    with pytest.raises(ConfigError, match="cannot read a timeseries input"):
        parse({**base, "model": {"family": "mlp"}})
    bad = json.loads(json.dumps(base))
    bad["outputs"][0]["season"] = 24
    with pytest.raises(ConfigError, match="season 24 is longer than the input's lookback"):
        parse(bad)
    bad = json.loads(json.dumps(base))
    bad["inputs"].append({"name": "z", "type": "numeric"})
    with pytest.raises(ConfigError, match="one timeseries input and one forecast output"):
        parse(bad)


# ------------------------------------------------------------------------- end to end


def test_lstm_forecast_end_to_end_beats_seasonal_naive(tmp_path: Path) -> None:
    path = write(tmp_path / "s.csv", months(120), seasonal(120))
    run = lw.train(config(path), output=tmp_path / "run")
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())["test"]
    for key in ("mae", "rmse", "mase", "seasonal_naive_mae", "mae_vs_seasonal_naive"):
        assert key in m and math.isfinite(m[key])
    assert m["season"] == 12 and len(m["mae_by_horizon"]) == 3
    assert m["mae"] < m["seasonal_naive_mae"]  # a trend the naive forecast lags behind
    # predict: the next 3 months after the history, in the target's units
    model = lw.load(run.model_dir)
    rows = [{"month": t, "y": v} for t, v in zip(months(120), seasonal(120))]
    (p,) = model.predict(rows)
    assert p["y_time"] == ["2010-01-01", "2010-02-01", "2010-03-01"]
    assert np.allclose(p["y"], seasonal(123)[-3:], atol=1.5)
    # evaluate (the run's own test split) reproduces the recorded metrics
    again = lw.evaluate(run.model_dir)
    assert again["mae"] == pytest.approx(m["mae"], rel=1e-5)
    # the CLI: predict on a history file, evaluate on a file
    from layerwise.cli import main

    out = tmp_path / "forecast.jsonl"
    assert main(["predict", str(run.model_dir), str(path), "--output", str(out)]) == 0
    assert json.loads(out.read_text())["y"] == pytest.approx(p["y"])
    assert main(["evaluate", str(run.model_dir), str(path), "--output",
                 str(tmp_path / "m.json")]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["count"] == 120 - 12 - 3 + 1


@pytest.mark.parametrize("family", ["rnn", "transformer"])
def test_a_loaded_forecaster_predicts_exactly_like_the_in_memory_one(
        tmp_path: Path, family: str) -> None:
    model_cfg = {"rnn": {"family": "rnn", "cell": "gru", "hidden": 8, "pooling": "mean"},
                 "transformer": {"family": "transformer", "d_model": 16, "heads": 2,
                                 "layers": 1, "positions": "sinusoidal"}}[family]
    path = write(tmp_path / "s.csv", months(120), seasonal(120),
                 {"x": [i % 5 for i in range(120)]})
    cfg = parse({**config(path, exogenous=["x"]), "model": model_cfg})
    in_memory, loaded = in_memory_and_loaded(cfg, tmp_path, epochs=2)
    rows = {"month": months(40), "y": seasonal(40), "x": [i % 5 for i in range(40)]}
    a, b = in_memory.predict(rows), loaded.predict(rows)
    assert a == b and len(a[0]["y"]) == 3
    with pytest.raises(DataError, match="needs at least 12"):
        loaded.predict({"month": months(5), "y": seasonal(5), "x": [0] * 5})
    with pytest.raises(DataError, match="a gap in the series"):
        loaded.predict({"month": months(20)[:10] + months(20)[11:], "y": seasonal(19),
                        "x": [0] * 19})
