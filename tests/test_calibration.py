"""Calibration (ECE/MCE, temperature scaling) and split-conformal prediction, from the
arithmetic to ``layerwise calibrate`` and ``predict``."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import layerwise as lw
from layerwise.cli import main
from layerwise.errors import ConfigError
from layerwise.evaluation import calibration, conformal
from layerwise.evaluation.calibrate import calibrate
from layerwise.files import load_safetensors, save_safetensors

pytestmark = pytest.mark.usefixtures("one_thread")


def synthetic(n: int, classes: int = 4, sharpen: float = 1.0, seed: int = 0
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits whose softmax is the true class distribution, multiplied by ``sharpen``
    (> 1: an over-confident model), and labels drawn from that distribution."""
    g = torch.Generator().manual_seed(seed)
    true = torch.randn(n, classes, generator=g) * 1.5
    labels = torch.multinomial(true.softmax(1), 1, generator=g).squeeze(1)
    return true * sharpen, labels


# ---------------------------------------------------------------------------- arithmetic
def test_ece_and_mce_of_a_known_case() -> None:
    # every row says 0.9 for class 0; half are class 0: gap 0.4 in the one occupied bin
    probs = torch.tensor([[0.9, 0.1]] * 10)
    labels = torch.tensor([0, 1] * 5)
    err = calibration.calibration_errors(probs, labels, bins=10)
    assert err["ece"] == pytest.approx(0.4) and err["mce"] == pytest.approx(0.4)
    bins = calibration.reliability_bins(probs, labels, bins=10)
    full = [b for b in bins if b["count"]]
    assert len(full) == 1 and full[0]["accuracy"] == 0.5
    assert full[0]["confidence"] == pytest.approx(0.9)
    assert full[0]["low"] == pytest.approx(0.8)


def test_temperature_recovers_the_sharpening_and_halves_ece() -> None:
    logits, labels = synthetic(4000, sharpen=3.0)
    t = calibration.fit_temperature(logits[:2000], labels[:2000])
    assert t == pytest.approx(3.0, rel=0.15)
    before = calibration.report(logits[2000:], labels[2000:])
    after = calibration.report(logits[2000:], labels[2000:], t)
    assert after["ece"] <= before["ece"] / 2
    assert after["nll"] < before["nll"]
    # the predicted class never changes
    assert torch.equal((logits / t).argmax(1), logits.argmax(1))


def test_temperature_of_binary_logits() -> None:
    logits, labels = synthetic(3000, classes=2, sharpen=0.3)  # an under-confident model
    z = logits[:, 1] - logits[:, 0]  # the sigmoid logit of class 1
    t = calibration.fit_temperature(z, labels)
    assert t == pytest.approx(0.3, rel=0.2)
    assert calibration.class_probs(z).shape == (3000, 2)


def test_conformal_quantile_and_its_limits() -> None:
    scores = np.arange(1, 20, dtype=float)  # 19 rows: (19 + 1) * 0.9 = 18th smallest
    assert conformal.quantile(scores, 0.9) == 18.0
    with pytest.raises(ConfigError, match="needs at least 9 held-out rows; .* has 5"):
        conformal.quantile(scores[:5], 0.9)
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        conformal.quantile(scores, 1.0)


@pytest.mark.parametrize("class_conditional", [False, True])
def test_conformal_sets_reach_their_coverage_on_synthetic_data(class_conditional: bool
                                                               ) -> None:
    logits, labels = synthetic(6000, classes=5)
    probs, y = logits.softmax(1).numpy(), labels.numpy()
    names = [str(c) for c in range(5)]
    fitted = conformal.fit_classes(probs[:3000], y[:3000], 0.9, class_conditional, names)
    member = conformal.class_sets(probs[3000:], fitted, names)
    got = conformal.class_coverage(member, y[3000:])
    assert 0.88 <= got["coverage"] <= 0.92
    assert 1.0 < got["mean_set_size"] < 5.0
    assert got["per_class"]["2"] == pytest.approx(member[y[3000:] == 2, 2].mean())
    if class_conditional:  # every class, not just the average, is covered
        assert got["min_class_coverage"] > 0.85


def test_conformal_intervals_reach_their_coverage() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=4000)
    pred = y + rng.normal(scale=0.5, size=4000)
    fitted = conformal.fit_interval(y[:2000], pred[:2000], 0.9)
    assert fitted["half_width"] == pytest.approx(1.645 * 0.5, rel=0.08)
    got = conformal.interval_coverage(y[2000:], pred[2000:], fitted["half_width"])
    assert 0.88 <= got["coverage"] <= 0.92
    assert got["mean_width"] == pytest.approx(2 * fitted["half_width"])


# --------------------------------------------------------------------- on a saved model
def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def confident_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wine MLP made over-confident on purpose: its output layer's weights times 8."""
    from tests.conftest import TINY_MLP

    cfg = copy.deepcopy(TINY_MLP)
    cfg["train"]["epochs"] = 30
    cfg["data"]["split"] = {"validation": 0.3, "test": 0.3}
    run = lw.train(cfg, output=tmp_path_factory.mktemp("runs") / "wine")
    weights = run.model_dir / "model.safetensors"
    tensors = load_safetensors(weights)
    for k in ("heads.target.linear.weight", "heads.target.linear.bias"):
        tensors[k] = tensors[k] * 8
    save_safetensors(weights, tensors)
    return run.model_dir


def copy_model(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src.parent, dst)
    return dst / "model"


def test_calibrate_fits_and_stores_a_temperature(confident_model: Path,
                                                 tmp_path: Path) -> None:
    model = copy_model(confident_model, tmp_path / "run")
    weights = sha(model / "model.safetensors")
    raw = lw.load(model).predict([{"alcohol": 13.0, "malic_acid": 2.0, "ash": 2.4,
                                   "flavanoids": 2.0, "color_intensity": 5.0,
                                   "proline": 700.0}])[0]
    rep = calibrate(model)["target"]
    assert rep["temperature"] > 2  # the weights were sharpened 8-fold
    assert rep["test"]["ece_after"] < rep["test"]["ece_before"]
    assert rep["validation"]["nll_after"] < rep["validation"]["nll_before"]
    assert sha(model / "model.safetensors") == weights  # weights untouched
    meta = json.loads((model / "layerwise.json").read_text())
    assert meta["calibration"]["target"]["temperature"] == pytest.approx(rep["temperature"])
    assert (tmp_path / "run" / "evaluation" / "reliability.png").stat().st_size > 1000
    bins = json.loads((tmp_path / "run" / "evaluation" / "calibration.json").read_text())
    assert len(bins["target"]["curves"]["test"]["after"]["bins"]) == calibration.BINS
    # predict divides the logits by T: same class, softer probability
    m = lw.load(model)
    row = {"alcohol": 13.0, "malic_acid": 2.0, "ash": 2.4, "flavanoids": 2.0,
           "color_intensity": 5.0, "proline": 700.0}
    new = m.predict([row])[0]
    assert new["target"] == raw["target"]
    assert new["target_probability"] < raw["target_probability"]
    data, _ = __import__("layerwise.data.build", fromlist=["x"]).encode_rows(
        m.schema, m.to_table([row]), targets=False)
    logits = m.forward(data)["target"]
    expect = (logits / rep["temperature"]).softmax(1).max().item()
    assert new["target_probability"] == pytest.approx(expect, rel=1e-5)


def test_calibrate_conformal_sets_come_back_from_predict(confident_model: Path,
                                                         tmp_path: Path) -> None:
    model = copy_model(confident_model, tmp_path / "run")
    rep = calibrate(model, conformal_coverage=0.8, class_conditional=True)["target"]
    conf = rep["conformal"]
    assert conf["coverage"] == 0.8 and set(conf["class_quantiles"]) == {
        "class_0", "class_1", "class_2"}
    assert 0 <= conf["test"]["coverage"] <= 1 and conf["test"]["mean_set_size"] >= 0
    m = lw.load(model)
    rows = [{"alcohol": a, "malic_acid": 2.0, "ash": 2.4, "flavanoids": f,
             "color_intensity": 5.0, "proline": p}
            for a, f, p in ((14.0, 3.0, 1100.0), (12.0, 2.0, 500.0), (13.0, 0.7, 600.0))]
    for p in m.predict(rows):
        labels = p["target_set"]
        probs = p["target_probabilities"]
        assert all(lab in probs for lab in labels)
        # most likely first, and membership is the stored rule
        assert labels == sorted(labels, key=lambda c: -probs[c])
        q = conf["class_quantiles"]
        assert set(labels) == {c for c in probs if 1 - probs[c] <= q[c] + 1e-6}


def test_calibrate_a_regression_model(tmp_path: Path) -> None:
    from layerwise.config import parse

    cfg: dict[str, Any] = {
        "name": "reg", "seed": 0, "data": {"dataset": "diabetes",
                                           "split": {"validation": 0.3, "test": 0.2}},
        "inputs": [{"name": n, "type": "numeric"} for n in ("age", "bmi", "bp", "s5")],
        "outputs": [{"name": "target", "type": "numeric"}],
        "model": {"family": "mlp", "hidden": [8]},
        "train": {"epochs": 5, "batch_size": 32, "progress": "quiet"}}
    parse(cfg)
    model = lw.train(cfg, output=tmp_path / "reg").model_dir
    with pytest.raises(ConfigError, match="temperature scaling needs a category or binary "
                       "output.*target \\(numeric\\).*--conformal 0.9"):
        calibrate(model)
    rep = calibrate(model, conformal_coverage=0.9)["target"]["conformal"]
    assert rep["method"] == "absolute_residual" and rep["half_width"] > 0
    assert 0.7 <= rep["test"]["coverage"] <= 1.0
    p = lw.load(model).predict([{"age": 50, "bmi": 25.0, "bp": 90.0, "s5": 4.5}])[0]
    lo, hi = p["target_interval"]
    assert lo == pytest.approx(p["target"] - rep["half_width"])
    assert hi - lo == pytest.approx(rep["test"]["mean_width"])


def test_cli_calibrate(confident_model: Path, tmp_path: Path,
                       capsys: pytest.CaptureFixture) -> None:
    model = copy_model(confident_model, tmp_path / "run")
    assert main(["calibrate", str(model), "--conformal", "0.9", "-o",
                 str(tmp_path / "ev")]) == 0
    out = capsys.readouterr().out
    assert "temperature" in out and "ECE" in out and "conformal lac at 0.9" in out
    assert (tmp_path / "ev" / "conformal.json").is_file()
    card = (model / "card.md").read_text()
    assert card.count("## Calibration and conformal prediction") == 1
    assert "conformal lac at 0.9 coverage" in card
    assert main(["calibrate", str(model), "--no-temperature", "--conformal", "0.8"]) == 0
    card = (model / "card.md").read_text()  # replaced, not appended twice
    assert card.count("## Calibration and conformal prediction") == 1 and "at 0.8" in card
    assert "temperature" in card  # the stored temperature is still described
    rows = tmp_path / "rows.csv"
    rows.write_text("alcohol,malic_acid,ash,flavanoids,color_intensity,proline\n"
                    "13.2,1.8,2.4,2.9,5.6,1100\n")
    capsys.readouterr()
    assert main(["predict", str(model), str(rows)]) == 0
    got = json.loads(capsys.readouterr().out.splitlines()[0])
    assert isinstance(got["target_set"], list) and "target_probability" in got
    assert main(["calibrate", str(model), "--conformal", "1.5"]) == 2
    assert "strictly between 0 and 1" in capsys.readouterr().err
    assert main(["calibrate", str(tmp_path / "nowhere")]) == 2
    assert "model directory not found" in capsys.readouterr().err


def test_a_damaged_stored_temperature_is_refused(confident_model: Path,
                                                 tmp_path: Path) -> None:
    from layerwise.errors import ArtifactError

    model = copy_model(confident_model, tmp_path / "run")
    meta = json.loads((model / "layerwise.json").read_text())
    meta["calibration"] = {"target": {"temperature": -1}}
    (model / "layerwise.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="temperature must be a positive number"):
        lw.load(model).predict([{"alcohol": 13.0, "malic_acid": 2.0, "ash": 2.4,
                                 "flavanoids": 2.0, "color_intensity": 5.0,
                                 "proline": 700.0}])


def test_calibrate_without_a_validation_split_says_how_to_get_one(tmp_path: Path) -> None:
    from tests.conftest import TINY_MLP

    cfg = copy.deepcopy(TINY_MLP)
    cfg["data"]["split"] = {"validation": 0.0, "test": 0.2}
    cfg["train"]["epochs"] = 1
    model = lw.train(cfg, output=tmp_path / "r").model_dir
    with pytest.raises(ConfigError, match="no validation split; set data.split.validation "
                       "above 0"):
        calibrate(model)
    assert "calibration" not in json.loads((model / "layerwise.json").read_text())
