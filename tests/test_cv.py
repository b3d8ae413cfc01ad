"""Cross-validation: fold assignment, per-fold data building, the experiment and its CLI."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import layerwise as lw
from layerwise.cli import main
from layerwise.config import parse
from layerwise.data.build import build
from layerwise.data.folds import fold_split
from layerwise.errors import ConfigError, DataError
from layerwise.experiments import cross_validate
from layerwise.experiments.cv import t_interval

pytestmark = pytest.mark.usefixtures("one_thread")


def grouped_csv(path: Path, n: int = 72, groups: int = 12) -> Path:
    """Two numeric features, a two-class label and a group column (``n // groups`` rows
    per group, both classes in each group)."""
    rng = np.random.default_rng(0)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["x1", "x2", "label", "patient"])
        for i in range(n):
            y = i % 2
            w.writerow([rng.normal(y), rng.normal(-y), f"c{y}", f"p{i % groups}"])
    return path


def csv_config(path: Path) -> dict[str, Any]:
    return {"name": "grouped", "seed": 0, "data": {"path": str(path)},
            "inputs": [{"name": "x1", "type": "numeric"}, {"name": "x2", "type": "numeric"}],
            "outputs": [{"name": "label", "type": "category"}],
            "model": {"family": "mlp", "hidden": [8]},
            "train": {"epochs": 2, "batch_size": 16, "progress": "quiet"}}


# ----------------------------------------------------------------------- fold assignment
def test_folds_are_disjoint_cover_every_row_and_are_stratified() -> None:
    labels = np.array(["a"] * 60 + ["b"] * 30 + ["c"] * 15)
    held = [fold_split(len(labels), 5, k, labels, None, seed=3)[1] for k in range(5)]
    everything = np.concatenate(held)
    assert len(everything) == len(labels) and len(set(everything.tolist())) == len(labels)
    for h in held:  # each fold keeps the class shares: 12 a, 6 b, 3 c
        _, counts = np.unique(labels[h], return_counts=True)
        assert counts.tolist() == [12, 6, 3]
    rest, h0 = fold_split(len(labels), 5, 0, labels, None, seed=3)
    assert not set(rest.tolist()) & set(h0.tolist())


def test_repeats_reshuffle_the_folds() -> None:
    labels = np.array(["a", "b"] * 20)
    a = fold_split(40, 4, 0, labels, None, seed=0)[1]
    b = fold_split(40, 4, 0, labels, None, seed=1000)[1]
    assert a.tolist() != b.tolist()
    assert a.tolist() == fold_split(40, 4, 0, labels, None, seed=0)[1].tolist()


@pytest.mark.parametrize("labels", [None, np.array(["a", "b"] * 30)])
def test_grouped_folds_keep_each_group_in_one_fold(labels: np.ndarray | None) -> None:
    groups = np.array([f"g{i % 10}" for i in range(60)])
    seen: dict[str, int] = {}
    for k in range(5):
        for g in set(groups[fold_split(60, 5, k, labels, groups, seed=0)[1]].tolist()):
            assert g not in seen, f"group {g} in folds {seen.get(g)} and {k}"
            seen[g] = k
    assert len(seen) == 10


def test_too_few_rows_or_groups_are_clear_errors() -> None:
    with pytest.raises(DataError, match="3 rows cannot fill 5 folds"):
        fold_split(3, 5, 0, None, None, seed=0)
    with pytest.raises(DataError, match="2 distinct values; 3 folds"):
        fold_split(10, 3, 0, None, np.array(["a", "b"] * 5), seed=0)


# ------------------------------------------------------------------- folds in data.build
def fold_cfg(base: dict[str, Any], folds: int, fold: int, **split: Any) -> Any:
    cfg = copy.deepcopy(base)
    cfg["data"]["split"] = {"folds": folds, "fold": fold, **split}
    return parse(cfg)


def test_build_holds_out_each_fold_once_and_fits_encoders_per_fold(tiny_mlp: dict) -> None:
    tests, means = [], []
    for k in range(3):
        ds = build(fold_cfg(tiny_mlp, 3, k))
        assert ds.raw_test is not None and ds.raw_validation is not None
        tests.append(ds.raw_test["alcohol"])
        train = ds.raw_train["alcohol"]  # type: ignore[index]
        enc = ds.schema.inputs[0]
        # the encoder's statistics are those of this fold's own training part
        assert enc.shift == pytest.approx(float(np.mean(train)), rel=1e-5)  # type: ignore
        means.append(enc.shift)  # type: ignore[attr-defined]
        n = len(train) + len(ds.raw_validation["alcohol"]) + len(ds.raw_test["alcohol"])
        assert n == 178
    assert sum(len(t) for t in tests) == 178
    assert len(set(means)) == 3


def test_grouped_build_keeps_groups_out_of_train(tmp_path: Path) -> None:
    cfg = fold_cfg(csv_config(grouped_csv(tmp_path / "g.csv")), 4, 1, group="patient")
    ds = build(cfg)
    # rebuild the group of each row: raw splits hold the features only, so match x1 values
    rows = list(csv.DictReader((tmp_path / "g.csv").open()))
    group_of = {round(float(r["x1"]), 6): r["patient"] for r in rows}
    part = {s: {group_of[round(float(v), 6)] for v in getattr(ds, f"raw_{s}")["x1"]}
            for s in ("train", "validation", "test")}
    assert not part["test"] & part["train"] and not part["test"] & part["validation"]
    assert not part["train"] & part["validation"]


def test_missing_group_column_is_named(tmp_path: Path) -> None:
    cfg = fold_cfg(csv_config(grouped_csv(tmp_path / "g.csv")), 3, 0, group="patinet")
    with pytest.raises(DataError, match="missing column 'patinet'.*did you mean 'patient'"):
        build(cfg)


def test_split_config_checks_the_fold_fields(tiny_mlp: dict) -> None:
    with pytest.raises(ConfigError, match="split.fold must be below split.folds"):
        fold_cfg(tiny_mlp, 3, 3)
    with pytest.raises(ConfigError, match="greater than or equal to 2"):
        fold_cfg(tiny_mlp, 1, 0)
    cfg = copy.deepcopy(tiny_mlp)
    cfg["data"]["split"] = {"fold": 1}
    with pytest.raises(ConfigError, match="need split.folds"):
        parse(cfg)


# ----------------------------------------------------------------------- the experiment
def test_t_interval_matches_scipy() -> None:
    from scipy import stats

    v = [0.8, 0.85, 0.9, 0.82, 0.88]
    got = t_interval(v)
    lo, hi = stats.t.interval(0.95, 4, loc=np.mean(v), scale=stats.sem(v))
    assert got["ci_low"] == pytest.approx(lo) and got["ci_high"] == pytest.approx(hi)
    assert got["std"] == pytest.approx(np.std(v, ddof=1))


def test_cross_validate_writes_per_fold_table_and_summary(tiny_mlp: dict,
                                                          tmp_path: Path) -> None:
    res = cross_validate(tiny_mlp, folds=3, output=tmp_path / "cv")
    assert [f["fold"] for f in res.folds] == [0, 1, 2]
    accs = [f["metrics"]["accuracy"] for f in res.folds]
    s = res.summary["accuracy"]
    assert s["mean"] == pytest.approx(np.mean(accs)) and s["n"] == 3
    assert s["ci_low"] <= s["mean"] <= s["ci_high"]
    assert sum(f["rows"]["test"] for f in res.folds) == 178
    saved = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert saved["folds"][1]["metrics"] == res.folds[1]["metrics"] and saved["stratified"]
    lines = (tmp_path / "cv" / "cv.csv").read_text().splitlines()
    assert len(lines) == 4 and "accuracy" in lines[0]
    md = (tmp_path / "cv" / "cv.md").read_text()
    assert "| 0 | 2 |" in md and "95% CI" in md
    # each fold is an ordinary run whose config records its fold
    cfg = (tmp_path / "cv" / "fold-2" / "config.yaml").read_text()
    assert "fold: 2" in cfg and "folds: 3" in cfg
    # ... so evaluating a fold's model rebuilds the same held-out fold from its config
    again = lw.evaluate(tmp_path / "cv" / "fold-1" / "model")
    assert again["accuracy"] == pytest.approx(res.folds[1]["metrics"]["accuracy"])
    assert again["count"] == res.folds[1]["rows"]["test"]
    # the tracking store records the folds as cross-validation runs, tagged by fold
    from layerwise.tracking.store import open_store

    recorded = [r for r in open_store().runs(kind="cv") if r["tags"]["cv"] == str(tmp_path / "cv")]
    assert sorted(r["tags"]["fold"] for r in recorded) == [0, 1, 2]


def test_cross_validate_resume_reuses_finished_folds(tiny_mlp: dict, tmp_path: Path) -> None:
    first = cross_validate(tiny_mlp, folds=2, output=tmp_path / "cv")
    weights = tmp_path / "cv" / "fold-0" / "model" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    again = cross_validate(tiny_mlp, folds=2, output=tmp_path / "cv", resume=True)
    assert weights.stat().st_mtime_ns == stamp
    assert again.summary == first.summary
    with pytest.raises(Exception, match="already holds a finished run"):
        cross_validate(tiny_mlp, folds=2, output=tmp_path / "cv")


def test_repeats_name_their_runs(tiny_mlp: dict, tmp_path: Path) -> None:
    res = cross_validate(tiny_mlp, folds=2, repeats=2, output=tmp_path / "cv")
    assert [(f["repeat"], f["fold"]) for f in res.folds] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert (tmp_path / "cv" / "repeat-1-fold-0" / "model").is_dir()


def test_bad_arguments_are_clear_errors(tiny_mlp: dict, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--folds >= 2; got 1"):
        cross_validate(tiny_mlp, folds=1, output=tmp_path / "a")
    with pytest.raises(ConfigError, match="--repeats >= 1; got 0"):
        cross_validate(tiny_mlp, folds=2, repeats=0, output=tmp_path / "a")
    cfg = copy.deepcopy(tiny_mlp)
    cfg["data"]["split"] = {"column": "split"}
    with pytest.raises(ConfigError, match="remove data.split.column"):
        cross_validate(cfg, folds=2, output=tmp_path / "a")
    assert not (tmp_path / "a").exists()


def test_cli_cv_prints_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = grouped_csv(tmp_path / "g.csv")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps(csv_config(path)))
    assert main(["cv", str(cfg), "--folds", "1", "-o", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == "error: cross-validation needs --folds >= 2; got 1"
    assert main(["cv", str(cfg), "--folds", "3", "--group", "nope", "-q",
                 "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "missing column 'nope'" in err and len(err.strip().splitlines()) == 1
    assert main(["cv", str(cfg), "--folds", "3", "--group", "patient", "-q",
                 "-o", str(tmp_path / "o")]) == 0
    assert "grouped by 'patient'" in capsys.readouterr().out
