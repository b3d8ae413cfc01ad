"""``layerwise evaluate`` in full: bootstrap intervals, curves, confusion matrix, residuals,
calibration, conformal coverage and operational metrics, and the evaluation folder."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import layerwise as lw
from layerwise.cli import main
from layerwise.errors import ConfigError
from layerwise.evaluation import bootstrap
from layerwise.evaluation.calibrate import calibrate
from layerwise.evaluation.detailed import evaluate_run, supports

pytestmark = pytest.mark.usefixtures("one_thread")

BINARY: dict[str, Any] = {
    "name": "tiny_binary", "seed": 0, "data": {"dataset": "breast-cancer"},
    "inputs": [{"name": n, "type": "numeric"} for n in
               ("mean radius", "mean texture", "mean smoothness", "worst area")],
    "outputs": [{"name": "target", "type": "binary"}],
    "model": {"family": "mlp", "hidden": [8]},
    "train": {"epochs": 3, "batch_size": 32, "progress": "quiet"}}

REGRESSION: dict[str, Any] = {
    "name": "tiny_reg", "seed": 0, "data": {"dataset": "diabetes"},
    "inputs": [{"name": n, "type": "numeric"} for n in ("age", "bmi", "bp", "s5")],
    "outputs": [{"name": "target", "type": "numeric"}],
    "model": {"family": "mlp", "hidden": [8]},
    "train": {"epochs": 5, "batch_size": 32, "progress": "quiet"}}


# ----------------------------------------------------------------------------- bootstrap
def test_bootstrap_metrics_agree_with_scikit_learn() -> None:
    from sklearn.metrics import f1_score, mean_absolute_error, r2_score

    rng = np.random.default_rng(1)
    y, p = rng.integers(0, 4, 300), rng.integers(0, 4, 300)
    p[:150] = y[:150]
    assert bootstrap.macro_f1(5)(y, p) == pytest.approx(  # class 4: never seen, scores 0
        f1_score(y, p, labels=range(5), average="macro", zero_division=0))
    a, b = rng.normal(size=100), rng.normal(size=100)
    assert bootstrap.mae(a, b) == pytest.approx(mean_absolute_error(a, b))
    assert bootstrap.r2(a, b) == pytest.approx(r2_score(a, b))


def test_validation_macro_f1_agrees_with_scikit_learn() -> None:
    import torch
    from sklearn.metrics import f1_score

    from layerwise.models.heads import CategoryHead

    rng = np.random.default_rng(2)
    y = rng.integers(0, 4, 500)
    logits = rng.normal(size=(500, 5))  # class 4: never a target, sometimes predicted
    logits[np.arange(250), y[:250]] += 3.0
    got = CategoryHead("label", 8, 5).metrics(torch.tensor(logits), torch.tensor(y))
    assert got["macro_f1"] == pytest.approx(f1_score(
        y, logits.argmax(1), labels=range(5), average="macro", zero_division=0), abs=1e-12)
    assert got["accuracy"] == pytest.approx(float((logits.argmax(1) == y).mean()))


def test_early_stopping_can_follow_validation_macro_f1(tiny_mlp: dict[str, Any],
                                                       tmp_path: Path) -> None:
    cfg = tiny_mlp
    cfg["train"] = {**cfg["train"], "epochs": 8,
                    "early_stopping": {"monitor": "val_macro_f1", "patience": 2}}
    run = lw.train(cfg, output=tmp_path / "run")
    scores = [h["val_macro_f1"] for h in run.history]
    assert all(0.0 <= f <= 1.0 for f in scores)
    # "auto" reads an F1 as a score to raise: the weights kept are those of the best epoch
    best = max(scores)
    assert run.fit.best == {"epoch": 1 + scores.index(best), "value": best}
    assert run.metrics["validation"]["macro_f1"] == pytest.approx(best, abs=1e-9)


def test_bootstrap_intervals_cover_the_value_and_are_seeded() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    p = np.where(rng.random(400) < 0.8, y, 1 - y)
    got = bootstrap.intervals(y, p, bootstrap.classification_metrics(2), 300, seed=5)
    acc = got["accuracy"]
    assert acc["low"] < acc["value"] < acc["high"]
    # the percentile interval of a proportion: about ± 1.96 sqrt(p (1 - p) / n)
    assert acc["high"] - acc["low"] == pytest.approx(2 * 1.96 * np.sqrt(.16 / 400), rel=0.25)
    assert got == bootstrap.intervals(y, p, bootstrap.classification_metrics(2), 300, seed=5)
    with pytest.raises(ConfigError, match="at least 10 resamples"):
        bootstrap.intervals(y, p, bootstrap.REGRESSION, 5)


# --------------------------------------------------------------------- the full evaluation
@pytest.fixture(scope="module")
def cnn_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import TINY_CNN

    return lw.train(copy.deepcopy(TINY_CNN),
                    output=tmp_path_factory.mktemp("r") / "cnn").model_dir


def test_classifier_folder_holds_matrix_curves_and_operational(cnn_model: Path,
                                                               tmp_path: Path) -> None:
    m = evaluate_run(cnn_model, output=tmp_path / "ev", samples=50, price_per_hour=0.5)
    files = {p.name for p in (tmp_path / "ev").iterdir()}
    assert {"metrics.json", "confusion_matrix.json", "confusion_matrix.png", "curves.json",
            "roc_pr.png", "reliability.png"} <= files
    cm = json.loads((tmp_path / "ev" / "confusion_matrix.json").read_text())
    assert cm["matrix"] == m["confusion_matrix"] and cm["labels"] == m["labels"]
    assert len(m["per_class"]) == 10 and "support" in m["per_class"]["3"]
    curves = json.loads((tmp_path / "ev" / "curves.json").read_text())
    assert curves["kind"] == "one-vs-rest" and len(curves["classes"]) == 10
    assert 0 <= m["macro_roc_auc"] <= 1
    assert m["bootstrap"]["accuracy"]["value"] == pytest.approx(m["accuracy"])
    assert 0 <= m["calibration"]["ece"] <= 1
    ops = m["operational"]
    lat = ops["latency_batch_1"]
    assert 0 < lat["p50_ms"] <= lat["p95_ms"] <= lat["p99_ms"]
    thr = ops["throughput_batch_64"]
    assert thr["cost_per_1000"] == pytest.approx(0.5 * thr["wall_seconds_per_1000"] / 3600)
    assert ops["size"]["weights_bytes"] == (cnn_model / "model.safetensors").stat().st_size
    assert ops["machine"]["kind"] in ("amx", "avx512_bf16", "avx2", "unknown")
    saved = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert saved["bootstrap"]["macro_f1"] == m["bootstrap"]["macro_f1"]


def test_stored_calibration_and_conformal_are_scored(cnn_model: Path, tmp_path: Path) -> None:
    import shutil

    shutil.copytree(cnn_model.parent, tmp_path / "run")
    model = tmp_path / "run" / "model"
    rep = calibrate(model, conformal_coverage=0.8)["label"]
    m = evaluate_run(model, samples=20, measure=False)
    assert (tmp_path / "run" / "evaluation" / "metrics.json").is_file()  # the default place
    assert m["calibration"]["temperature"] == pytest.approx(rep["temperature"])
    assert m["calibration"]["ece"] == pytest.approx(rep["test"]["ece_after"], abs=1e-6)
    assert m["calibration"]["uncalibrated"]["ece"] == pytest.approx(
        rep["test"]["ece_before"], abs=1e-6)
    assert m["conformal"]["coverage"] == pytest.approx(rep["conformal"]["test"]["coverage"])
    assert "operational" not in m


def test_binary_curves_and_regression_residuals(tmp_path: Path) -> None:
    model = lw.train(copy.deepcopy(BINARY), output=tmp_path / "b").model_dir
    m = evaluate_run(model, samples=50, measure=False)
    assert m["macro_roc_auc"] == pytest.approx(m["roc_auc"])
    curves = json.loads((tmp_path / "b" / "evaluation" / "curves.json").read_text())
    assert curves["kind"] == "binary" and len(curves["classes"]) == 1  # the positive class
    reg = lw.train(copy.deepcopy(REGRESSION), output=tmp_path / "r").model_dir
    r = evaluate_run(reg, samples=50, measure=False)
    assert r["bootstrap"]["mae"]["value"] == pytest.approx(r["mae"])
    assert r["bootstrap"]["rmse"]["low"] <= r["rmse"] <= r["bootstrap"]["rmse"]["high"]
    assert (tmp_path / "r" / "evaluation" / "residuals.png").stat().st_size > 1000
    res = json.loads((tmp_path / "r" / "evaluation" / "residuals.json").read_text())
    assert set(res["quantiles"]) == {"p05", "p25", "p50", "p75", "p95"}
    assert supports(reg) and supports(model)


def test_cli_evaluate_details_and_basic(cnn_model: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    assert main(["evaluate", str(cnn_model), "--folder", str(tmp_path / "ev"),
                 "--bootstrap", "20", "--price-per-hour", "1.2"]) == 0
    out = capsys.readouterr().out
    assert "95% bootstrap" in out and "latency: p50" in out and "per 1,000 at 1.2/h" in out
    assert main(["evaluate", str(cnn_model), "--basic", "--folder", str(tmp_path / "b")]) == 0
    assert "bootstrap" not in capsys.readouterr().out and not (tmp_path / "b").exists()
    assert main(["evaluate", str(cnn_model), "--price-per-hour", "-1"]) != 0
