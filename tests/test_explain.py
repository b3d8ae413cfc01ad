"""Explanations: every method on tabular, image and text models; the two sanity checks
(integrated-gradients completeness, model randomisation); attention maps; global
importance; the command line; clear errors where a method does not apply."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import layerwise as lw
from layerwise.cli import main
from layerwise.data.build import build
from layerwise.errors import ConfigError
from layerwise.explain import METHODS
from layerwise.explain.attributions import randomised_copy
from layerwise.explain.importance import mean_abs, permutation

pytestmark = pytest.mark.usefixtures("one_thread")


def rows_of(model: Any, n: int) -> dict[str, Any]:
    raw = build(model.config).raw_test
    return {k: list(v[:n]) for k, v in raw.items()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from tests.conftest import TINY_CNN, TINY_MLP

    out = tmp_path_factory.mktemp("explain")
    torch.set_num_threads(1)
    mlp = copy.deepcopy(TINY_MLP)
    mlp["train"]["epochs"] = 20
    cnn = copy.deepcopy(TINY_CNN)
    cnn["data"]["limit"] = 600
    cnn["inputs"][0].pop("augment")
    cnn["model"]["dropout"] = 0.0
    cnn["train"].update(epochs=15, batch_size=16, optimizer={"lr": 0.01})  # test acc ~0.6
    return {"mlp": lw.load(lw.train(mlp, output=out / "mlp").model_dir),
            "cnn": lw.load(lw.train(cnn, output=out / "cnn").model_dir), "dir": out}


@pytest.fixture(scope="module")
def text_model(tmp_path_factory: pytest.TempPathFactory) -> Any:
    out = tmp_path_factory.mktemp("text")
    rng = random.Random(0)
    lines = ["text,label"]
    for i in range(120):
        label = ["positive", "negative"][i % 2]
        words = rng.sample(["the", "phone", "is", "my", "new", "car", "today"], 4)
        words.insert(rng.randrange(5), rng.choice(["love", "great"] if label == "positive"
                                                  else ["hate", "awful"]))
        lines.append(f"{' '.join(words)},{label}")
    (out / "t.csv").write_text("\n".join(lines) + "\n")
    cfg = {"name": "t", "seed": 0, "data": {"path": str(out / "t.csv")},
           "inputs": [{"name": "text", "type": "text", "tokenizer": "word", "max_length": 8}],
           "outputs": [{"name": "label", "type": "category"}],
           "model": {"family": "transformer", "d_model": 16, "heads": 2, "layers": 2},
           "train": {"epochs": 6, "batch_size": 16, "progress": "quiet", "threads": 1,
                     "optimizer": {"lr": 0.01}}}
    return lw.load(lw.train(cfg, output=out / "run").model_dir)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_every_method_gives_finite_maps_of_the_input_shape(
        trained: dict[str, Any], kind: str, method: str, tmp_path: Path) -> None:
    model = trained[kind]
    ex = model.explain(rows_of(model, 2), method=method, samples=60,
                       output_dir=tmp_path / "ex")
    assert len(ex.rows) == 2
    shape = (6,) if kind == "mlp" else (8, 8)
    for a in ex.maps:
        assert a.shape == shape and np.isfinite(a).all()
    assert any(np.abs(a).sum() > 0 for a in ex.maps), "all-zero attributions"
    doc = json.loads((tmp_path / "ex" / "explanation.json").read_text())
    assert doc["method"] == method and len(doc["pictures"]) == 2
    assert all((tmp_path / "ex" / p).stat().st_size > 1000 for p in doc["pictures"])


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_integrated_gradients_is_complete_within_one_percent(
        trained: dict[str, Any], kind: str) -> None:
    """Sum of attributions = f(x) - f(baseline) (Sundararajan et al. 2017, axiom 1),
    checked against a separately computed f(x) - f(baseline)."""
    model = trained[kind]
    # max pooling and ReLUs make the path integral piecewise smooth: 1024 steps
    ex = model.explain(rows_of(model, 6), method="integrated_gradients", steps=1024)
    checked = [r["completeness"] for r in ex.rows
               if abs(r["completeness"]["f_x_minus_f_baseline"]) > 0.05]
    assert checked, "no row moved the output enough to check"
    for c in checked:
        assert c["relative_error"] < 0.01, c


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a.ravel(), b.ravel()).statistic)


def test_maps_change_when_the_weights_are_randomised(trained: dict[str, Any]) -> None:
    """Adebayo et al. 2018: a map that survives weight randomisation explains the input,
    not the model. Signed integrated-gradients maps of the trained CNN and of a copy with
    re-initialised weights: mean rank correlation below 0.3."""
    model = trained["cnn"]
    rows = rows_of(model, 8)
    a = model.explain(rows, method="integrated_gradients", target="0").maps
    b = randomised_copy(model).explain(rows, method="integrated_gradients", target="0").maps
    rho = np.mean([spearman(x, y) for x, y in zip(a, b)])
    assert rho < 0.3, rho
    same = model.explain(rows, method="integrated_gradients", target="0").maps
    assert np.mean([spearman(x, y) for x, y in zip(a, same)]) > 0.99  # the check can fail


def test_attention_maps_render_for_a_transformer(text_model: Any, tmp_path: Path) -> None:
    ex = text_model.explain(["I love my new phone", "awful car today"], method="attention",
                            output_dir=tmp_path)
    first = ex.rows[0]
    n = len(first["tokens"])
    assert len(first["attention"]) == 2  # one map per block
    w = np.array(first["attention"][-1])
    assert w.shape == (n, n) and np.allclose(w.sum(1), 1.0, atol=1e-4)  # rows are softmaxes
    assert (tmp_path / "row0_attention.png").stat().st_size > 1000
    assert (tmp_path / "row0_attention_received.png").stat().st_size > 1000


@pytest.mark.parametrize("method", ["integrated_gradients", "gradient_shap", "occlusion",
                                    "kernel_shap"])
def test_text_methods_attribute_tokens(text_model: Any, method: str) -> None:
    ex = text_model.explain(["I love my new phone"], method=method, samples=40)
    assert len(ex.maps[0]) == len(ex.rows[0]["tokens"]) == 5
    if method == "integrated_gradients":
        assert ex.rows[0]["completeness"]["relative_error"] < 0.05


def test_global_importance_ranks_the_columns(trained: dict[str, Any]) -> None:
    model = trained["mlp"]
    raw = build(model.config).raw_test
    perm = permutation(model, raw, repeats=2)
    assert set(perm["importance"]) == {e.name for e in model.schema.numeric}
    assert 0.0 <= perm["score"] <= 1.0
    mean = mean_abs(model, {k: list(v[:10]) for k, v in raw.items()})
    assert list(mean["importance"].values()) == sorted(mean["importance"].values(),
                                                       reverse=True)


def test_methods_that_do_not_apply_are_clear_errors(trained: dict[str, Any]) -> None:
    model = trained["cnn"]
    rows = rows_of(model, 1)
    with pytest.raises(ConfigError, match="transformer"):
        model.explain(rows, method="attention")
    with pytest.raises(ConfigError, match="one of"):
        model.explain(rows, method="saliency_magic")
    with pytest.raises(ConfigError, match="not a class"):
        model.explain(rows, target="no-such-class")
    with pytest.raises(ConfigError, match="tabular columns"):
        permutation(model, build(model.config).raw_test)


def test_cli_writes_json_and_pngs(trained: dict[str, Any], tmp_path: Path) -> None:
    model_dir = trained["dir"] / "mlp" / "model"
    raw = build(trained["mlp"].config).raw_test
    csv = tmp_path / "rows.csv"
    keys = list(raw)
    csv.write_text(",".join(keys) + "\n" + "\n".join(
        ",".join(str(raw[k][i]) for k in keys) for i in range(len(raw[keys[0]]))) + "\n")
    assert main(["explain", str(model_dir), str(csv), "-o", str(tmp_path / "ex"), "-n",
                 "3", "--method", "occlusion"]) == 0
    assert len(json.loads((tmp_path / "ex" / "explanation.json").read_text())["rows"]) == 3
    assert main(["explain", str(model_dir), str(csv), "-o", str(tmp_path / "imp"),
                 "--importance", "permutation"]) == 0
    assert (tmp_path / "imp" / "importance.png").exists()
    assert main(["explain", str(model_dir), str(csv), "--method", "attention",
                 "-o", str(tmp_path / "x")]) == 2


def test_cli_explains_a_folder_of_images(trained: dict[str, Any], tmp_path: Path) -> None:
    from PIL import Image

    raw = build(trained["cnn"].config).raw_test
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        px = np.asarray(raw["image"][i], dtype=np.float64).reshape(8, 8)
        Image.fromarray((px * 255 / max(1.0, px.max())).astype(np.uint8)).save(
            folder / f"{i}.png")
    out = tmp_path / "ex"
    assert main(["explain", str(trained["dir"] / "cnn" / "model"), str(folder), "-o",
                 str(out), "--method", "gradient_shap"]) == 0
    doc = json.loads((out / "explanation.json").read_text())
    assert doc["kind"] == "image" and len(doc["rows"]) == 2
    assert np.array(doc["rows"][0]["attributions"]).shape == (8, 8)
