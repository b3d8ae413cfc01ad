"""Drift monitoring: the tests themselves, the reference training writes, and
``layerwise monitor`` on a synthetic table with one shifted feature and on a clean one."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import layerwise as lw
from layerwise.inference.predictor import Predictor
from layerwise.monitoring import drift, monitor, reference
from layerwise.monitoring.rolling import RollingDrift
from layerwise.serving.abstain import choose_threshold, reason

pytestmark = pytest.mark.usefixtures("one_thread")
COLORS = ["red", "green", "blue"]


def table(n: int, seed: int, shift_b: float = 0.0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    a, b, c = rng.normal(0, 1, n), rng.normal(5, 2, n) + shift_b, rng.normal(-1, 0.5, n)
    color = rng.choice(COLORS, n, p=[0.5, 0.3, 0.2])
    y = np.where(a + (b - 5) / 2 > 0, "yes", "no")
    return [{"a": float(a[i]), "b": float(b[i]), "c": float(c[i]), "color": str(color[i]),
             "y": str(y[i])} for i in range(n)]


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def tabular(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("drift")
    data = write_csv(root / "train.csv", table(600, 0))
    cfg = {"name": "drift_mlp", "seed": 0, "data": {"path": str(data)},
           "inputs": [{"name": n, "type": "numeric"} for n in "abc"]
           + [{"name": "color", "type": "category"}],
           "outputs": [{"name": "y", "type": "category"}],
           "model": {"family": "mlp", "hidden": [8]},
           "train": {"epochs": 2, "batch_size": 32, "progress": "quiet"}}
    return lw.train(cfg, output=root / "run").model_dir


def test_training_writes_what_monitoring_needs(tabular: Path) -> None:
    ref = reference.read(tabular)
    assert 100 < len(ref["b"]["sample"]) <= reference.SAMPLE
    assert set(ref["_predictions"]["y"]) <= {"yes", "no"}
    assert "_embedding" not in ref  # a table has no image or text to embed


def test_unshifted_rows_pass_and_a_shifted_feature_is_named(tabular: Path) -> None:
    pred = Predictor.load(tabular)
    clean = monitor.check_rows(pred, table(400, 7))
    shifted = monitor.check_rows(pred, table(400, 7, shift_b=2.0))
    assert not clean["drift"], clean["drifted"]
    assert shifted["drift"]
    assert "b" in shifted["drifted"] and not {"a", "c", "color"} & set(shifted["drifted"])
    assert shifted["features"]["b"]["psi"] > 0.1 > clean["features"]["b"]["psi"]


def test_monitor_command_exit_code_and_reports(tabular: Path, tmp_path: Path) -> None:
    from layerwise.cli import main

    clean = write_csv(tmp_path / "clean.csv", table(300, 3))
    moved = write_csv(tmp_path / "moved.csv", table(300, 3, shift_b=3.0))
    assert main(["monitor", str(tabular), str(clean), "-o", str(tmp_path / "r0")]) == 0
    assert main(["monitor", str(tabular), str(moved), "-o", str(tmp_path / "r1")]) == 1
    html = (tmp_path / "r1" / "drift.html").read_text()
    assert "Drift in: b" in html
    assert main(["monitor", str(tabular), str(tmp_path / "missing.csv")]) == 2


def test_monitor_reads_a_prediction_log(tabular: Path, tmp_path: Path) -> None:
    from layerwise.serving.records import JsonLines, read_lines, summary

    pred = Predictor.load(tabular)
    log = JsonLines(tmp_path / "predictions.jsonl", 40_000, 5)  # rotates: parts are read
    for rows in (table(300, 4, shift_b=3.0),):
        for row, out in zip(rows, pred.predict(rows), strict=True):
            log.write({"inputs": summary({k: v for k, v in row.items() if k != "y"}),
                       "output": out})
    log.close()
    assert (tmp_path / "predictions.jsonl.1").exists()
    report = monitor.check_log(pred, read_lines(tmp_path / "predictions.jsonl"))
    assert report["rows"] == 300 and "b" in report["drifted"]


def test_psi_ks_chi2_and_mmd_separate_same_from_shifted() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 1, 1000)
    entry = {"deciles": np.quantile(ref, np.linspace(0, 1, 11)).tolist(),
             "sample": ref.tolist()}
    live = np.random.default_rng(1)  # one draw (a p-value under no shift is uniform)
    same, moved = drift.numeric_test(entry, live.normal(0, 1, 500)), drift.numeric_test(
        entry, live.normal(0.5, 1, 500))
    assert same["psi"] < 0.05 < same["p_value"] and moved["psi"] > 0.1 > moved["p_value"]
    freqs = {"a": 0.5, "b": 0.5}
    assert drift.category_test(freqs, ["a"] * 50 + ["b"] * 50)["p_value"] > 0.5
    assert drift.category_test(freqs, ["a"] * 90 + ["b"] * 10)["p_value"] < 1e-6
    base = rng.normal(0, 1, (200, 8))
    assert drift.mmd_test(base, rng.normal(0, 1, (200, 8)), 100)["p_value"] > 0.05
    far = drift.mmd_test(base, rng.normal(0.5, 1, (200, 8)), 100)
    assert far["p_value"] < 0.02 and far["effect"] > 3
    flagged = drift.flag({"x": dict(moved), "y": dict(same)})
    assert flagged["x"]["drift"] and not flagged["y"]["drift"]


def test_rolling_scores_rise_with_a_shift() -> None:
    class Enc:
        name, kind = "x", "numeric"

    ref = {"x": {"type": "numeric", "deciles": list(np.linspace(-2, 2, 11))}}
    roll = RollingDrift(ref, [Enc()], window=100)
    roll.add([{"x": float(v)} for v in np.linspace(-1.9, 1.9, 100)])
    calm = roll.scores()["x"]
    roll.add([{"x": 3.0 + i / 100} for i in range(100)])
    assert calm < 0.1 < roll.scores()["x"]


def test_threshold_for_a_target_accuracy_and_conformal_sets() -> None:
    conf = np.array([0.99, 0.95, 0.9, 0.8, 0.7, 0.6])
    correct = np.array([1, 1, 1, 0, 1, 0])
    assert choose_threshold(conf, correct, 1.0, z=0) == 0.9
    assert choose_threshold(conf, correct, 0.8, z=0) == 0.7
    assert choose_threshold(conf, np.zeros(6), 0.9, z=0) == 1.0
    # with the lower bound, 3 right answers are not evidence of 100%; 300 of 300 are of 99%
    assert choose_threshold(conf, correct, 0.9) == 1.0
    many = np.linspace(1, 0.5, 400)
    right = np.r_[np.ones(300), np.zeros(100)]
    assert choose_threshold(many, right, 0.99) > choose_threshold(many, right, 0.99, z=0)

    class Out:
        name, kind = "label", "category"

    assert reason({"label": "a", "label_probability": 0.9}, [Out()], 0.8) is None
    assert "below" in str(reason({"label": "a", "label_probability": 0.7}, [Out()], 0.8))
    assert "conformal" in str(reason({"label": "a", "label_probability": 0.99,
                                      "label_set": ["a", "b"]}, [Out()], 0.5))


def test_comparison_metrics_leave_out_abstentions_and_use_mae_for_numbers() -> None:
    from layerwise.monitoring import compare

    log = [{"model": "m", "version": "1", "request_id": "a", "row": 0, "latency_ms": 2.0,
            "output": {"y": "yes", "y_probability": 0.9}, "abstain": False},
           {"model": "m", "version": "1", "request_id": "a", "row": 1, "latency_ms": 2.0,
            "output": {"y": "no", "y_probability": 0.6}, "abstain": False},
           {"model": "m", "version": "1", "request_id": "b", "row": 0, "latency_ms": 4.0,
            "output": {"y": "yes"}, "abstain": True},
           {"model": "m", "version": "2", "request_id": "c", "row": 0, "latency_ms": 1.0,
            "output": {"y": 3.0}, "abstain": False}]
    labels = {("a", 0): "yes", ("a", 1): "yes", ("b", 0): "no", ("c", 0): 5}
    got = compare.versions(log, labels)
    assert got["m@1"]["labelled"] == 3 and got["m@1"]["labelled_answered"] == 2
    assert got["m@1"]["accuracy"] == 0.5 and got["m@1"]["abstain_rate"] == pytest.approx(1 / 3)
    assert got["m@2"]["mae"] == 2.0 and "accuracy" not in got["m@2"]
    sh = compare.shadow([{"request_id": "a", "row": 0, "primary": "yes", "shadow": "no",
                          "primary_ms": 1, "shadow_ms": 3},
                         {"request_id": "a", "row": 1, "primary": "no", "shadow": "yes",
                          "primary_ms": 1, "shadow_ms": 3}], labels)
    assert sh["agreement"] == 0 and sh["primary"]["accuracy"] == 0.5
    assert sh["shadow"]["accuracy"] == 0.5 and sh["shadow_median_ms"] == 3
