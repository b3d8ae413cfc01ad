"""Series rows (issue 11): a row of numbers per sample as one ``series`` input, read by the
1-D CNN, rnn, transformer and mlp families; its normalisation and missing cells; what
`layerwise init` proposes for numbered columns."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from layerwise.api import load, train
from layerwise.config import parse
from layerwise.data.build import build
from layerwise.data.proposal import propose
from layerwise.errors import ConfigError, DataError

pytestmark = pytest.mark.usefixtures("one_thread")
STEPS = 24


def _signals(n: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """A bump early or late in a noisy row: which half holds it is the label."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.3, (n, STEPS)) + 5.0  # a level far from 0: normalisation matters
    late = rng.random(n) < 0.5
    for i in range(n):
        at = rng.integers(14, 20) if late[i] else rng.integers(2, 8)
        x[i, at: at + 3] += 3.0
    return x, ["late" if v else "early" for v in late]


def _csv(path: Path, n: int = 160, seed: int = 0, extra: bool = False) -> Path:
    x, y = _signals(n, seed)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*(f"t{i}" for i in range(STEPS)), *(["other"] if extra else []), "label"])
        for row, label in zip(x, y):
            w.writerow([*(f"{v:.4f}" for v in row), *([1.0] if extra else []), label])
    return path


def _config(path: Path, family: dict[str, Any], columns: Any = "t*",
            **series: Any) -> dict[str, Any]:
    return {"name": "rows", "seed": 0, "data": {"path": str(path)},
            "inputs": [{"name": "signal", "type": "series", "columns": columns, **series}],
            "outputs": [{"name": "label", "type": "binary"}], "model": family,
            "train": {"epochs": 6, "batch_size": 16, "progress": "quiet",
                      "optimizer": {"lr": 0.01}}}


CNN1D = {"family": "cnn", "blocks": [{"filters": 8, "kernel": 3, "pool": "max"}],
         "global_pool": "flatten",  # where the bump is: pooling over steps would lose it
         "dense": [16]}


def test_the_1d_cnn_learns_where_the_bump_is_and_predicts_from_a_file(tmp_path: Path
                                                                      ) -> None:
    run = train(_config(_csv(tmp_path / "rows.csv"), CNN1D), output=tmp_path / "run")
    assert run.metrics["test"]["accuracy"] >= 0.9  # chance is 0.5
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["inputs"][0]["columns"] == [f"t{i}" for i in range(STEPS)]  # expanded
    art = load(tmp_path / "run" / "model")
    conv = [m for m in art.model.modules() if isinstance(m, torch.nn.Conv1d)]
    assert conv and not any(isinstance(m, torch.nn.Conv2d) for m in art.model.modules())
    new = _csv(tmp_path / "new.csv", n=40, seed=1)
    preds = art.predict(str(new))
    truth = [r[-1] for r in list(csv.reader(new.open()))[1:]]
    assert np.mean([p["label"] == t for p, t in zip(preds, truth)]) >= 0.85


@pytest.mark.parametrize("family", [
    {"family": "rnn", "cell": "gru", "hidden": 16, "pooling": "mean"},
    {"family": "transformer", "d_model": 16, "heads": 2, "layers": 1},
    {"family": "mlp", "hidden": [16]}])
def test_rnn_transformer_and_mlp_read_a_series_row(tmp_path: Path,
                                                   family: dict[str, Any]) -> None:
    cfg = _config(_csv(tmp_path / "rows.csv", n=60), family)
    cfg["train"]["epochs"] = 1
    ds = build(parse(cfg))
    assert tuple(ds.train.inputs["signal"].shape[1:]) == (STEPS, 1)
    run = train(cfg, output=tmp_path / "run")
    assert 0.0 <= run.metrics["test"]["accuracy"] <= 1.0
    assert load(tmp_path / "run" / "model").predict(str(tmp_path / "rows.csv"))[0]["label"] \
        in ("early", "late")


def test_range_and_remaining_columns_pick_the_same_series(tmp_path: Path) -> None:
    path = _csv(tmp_path / "rows.csv", n=30, extra=True)
    by_range = parse(_config(path, CNN1D, columns=f"t0..t{STEPS - 1}"))
    rest = parse(_config(path, CNN1D, columns="*", exclude=["other"]))
    a, b = build(by_range), build(rest)
    assert by_range.inputs[0].columns == rest.inputs[0].columns
    assert torch.equal(a.train.inputs["signal"], b.train.inputs["signal"])


def test_normalisation_global_and_per_series(tmp_path: Path) -> None:
    path = _csv(tmp_path / "rows.csv", n=40)
    glob = build(parse(_config(path, CNN1D)))
    x = glob.train.inputs["signal"]
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 0.01  # over train
    enc = glob.schema.rows[0]
    assert 5.0 < enc.mean < 6.0  # fitted on the training values (level 5 plus bumps)
    per = build(parse(_config(path, CNN1D, normalize="per_series"))).test.inputs["signal"]
    assert torch.allclose(per.mean(1), torch.zeros(1), atol=1e-4)  # each row on its own
    assert torch.allclose(per.std(1, unbiased=False), torch.ones(1), atol=1e-3)


def test_an_empty_cell_is_named_or_interpolated(tmp_path: Path) -> None:
    path = _csv(tmp_path / "rows.csv", n=30)
    lines = path.read_text().splitlines()
    cells = lines[5].split(",")
    cells[3] = ""
    lines[5] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"line 6, column 'signal'.*column 't3'.*empty.*"
                                        r"missing: interpolate"):
        build(parse(_config(path, CNN1D)))
    ds = build(parse(_config(path, CNN1D, missing="interpolate", normalize="none")))
    every = torch.cat([ds.train.inputs["signal"], ds.validation.inputs["signal"],
                       ds.test.inputs["signal"]])
    assert torch.isfinite(every).all()
    before, after = float(cells[2]), float(cells[4])
    assert any(abs(float(r[3, 0]) - (before + after) / 2) < 1e-3 for r in every)


def test_a_cnn_whose_pools_leave_nothing_and_a_glob_that_matches_nothing(tmp_path: Path
                                                                        ) -> None:
    path = _csv(tmp_path / "rows.csv", n=30)
    deep = {"family": "cnn", "blocks": [{"filters": 4, "pool": "max"}] * 6}
    with pytest.raises(ConfigError, match=r"shrink a 24-step series to nothing"):
        train(_config(path, deep), output=tmp_path / "run")
    with pytest.raises(ConfigError, match=r"glob 'x\*' matches no column.*'t0'"):
        build(parse(_config(path, CNN1D, columns="x*")))
    with pytest.raises(ConfigError, match=r"range 't0..t30' names 7 column"):
        build(parse(_config(path, CNN1D, columns="t0..t30")))


def test_init_proposes_one_series_input_and_a_1d_cnn(tmp_path: Path) -> None:
    path = _csv(tmp_path / "rows.csv", n=120)
    p = propose(path)
    series = [f for f, _ in p.inputs if f["type"] == "series"]
    assert series == [{"name": "t", "type": "series", "columns": f"t0..t{STEPS - 1}"}]
    assert p.model["family"] == "cnn" and p.role("t5") == "input (t)"
    assert len(p.model["blocks"]) == 2  # 24 → 12 → 6 steps (a third would leave 3)
    config = tmp_path / "rows.yaml"
    config.write_text(p.yaml(config, "rows"))
    run = train(str(config), output=tmp_path / "run",
                overrides=["train.epochs=2", "train.progress=quiet"])
    assert run.metrics["test"]["accuracy"] > 0.5
