"""Every source format and output type, trained end to end and predicted from raw rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

import layerwise as lw
from layerwise.config import AugmentConfig
from layerwise.data.augment import Augmenter, flip, shift


def mixed_frame(n: int = 240, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    color = rng.choice(["red", "green", "blue"], size=n)
    flag = rng.choice(["yes", "no"], size=n)
    score = x + (color == "red") * 1.5 + (flag == "yes") * 0.5
    label = np.where(score > 0.5, "high", "low")
    return pd.DataFrame({"x": x.round(4), "color": color, "flag": flag, "label": label,
                         "value": (2 * score + 10).round(4)})


def mixed_config(path: Path, fmt: str | None = None, **train: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"path": str(path)}
    if fmt:
        data["format"] = fmt
    return {
        "name": "mixed", "data": data,
        "inputs": [{"name": "x", "type": "numeric"}, {"name": "color", "type": "category"},
                   {"name": "flag", "type": "binary"}],
        "outputs": [{"name": "label", "type": "category"}],
        "model": {"family": "mlp", "hidden": [16]},
        "train": {"epochs": 25, "batch_size": 32, "progress": "quiet",
                  "optimizer": {"lr": 0.01}, **train},
    }


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl", "npz"])
def test_each_file_format_trains_and_predicts(fmt: str, tmp_path: Path) -> None:
    frame = mixed_frame()
    path = tmp_path / f"data.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "parquet":
        frame.to_parquet(path)
    elif fmt == "jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        np.savez(path, **{c: frame[c].to_numpy().astype(
            float if pd.api.types.is_numeric_dtype(frame[c]) else str) for c in frame.columns})
    run = lw.train(mixed_config(path), output=tmp_path / "run")
    assert run.metrics["test"]["accuracy"] > 0.8
    model = lw.load(run.model_dir)
    preds = model.predict([{"x": 2.0, "color": "red", "flag": "yes"},
                           {"x": -2.0, "color": "blue", "flag": "no"},
                           {"x": 0.0, "color": "purple", "flag": "no"}])  # unseen colour
    assert [p["label"] for p in preds[:2]] == ["high", "low"]
    assert set(preds[2]["label_probabilities"]) == {"high", "low"}


def test_regression_reports_mae_rmse_r2_in_target_units(tmp_path: Path) -> None:
    frame = mixed_frame(400)
    frame.to_csv(tmp_path / "d.csv", index=False)
    cfg = mixed_config(tmp_path / "d.csv", epochs=60)
    cfg["outputs"] = [{"name": "value", "type": "numeric", "loss": "huber"}]
    run = lw.train(cfg, output=tmp_path / "run")
    test = run.metrics["test"]
    assert {"mae", "rmse", "r2"} <= set(test)
    assert test["r2"] > 0.8
    pred = lw.load(run.model_dir).predict({"x": [1.0], "color": ["red"], "flag": ["yes"]})
    assert 13 < pred[0]["value"] < 18  # 2 * (1 + 1.5 + 0.5) + 10 = 16


def test_binary_output_and_roc_auc(tmp_path: Path) -> None:
    frame = mixed_frame(300)
    frame.to_csv(tmp_path / "d.csv", index=False)
    cfg = mixed_config(tmp_path / "d.csv")
    cfg["inputs"] = [{"name": "x", "type": "numeric"}, {"name": "color", "type": "category"}]
    cfg["outputs"] = [{"name": "flag", "type": "binary"}]
    run = lw.train(cfg, output=tmp_path / "run")
    assert "roc_auc" in run.metrics["test"]
    p = lw.load(run.model_dir).predict([{"x": 0.1, "color": "red"}])[0]
    # the data's own labels come back (yes/no), not booleans
    assert p["flag"] in ("yes", "no") and 0 <= p["flag_probability"] <= 1


def test_class_weights_balanced_and_explicit(tmp_path: Path) -> None:
    frame = mixed_frame()
    frame.to_csv(tmp_path / "d.csv", index=False)
    cfg = mixed_config(tmp_path / "d.csv", epochs=2)
    cfg["outputs"][0]["class_weights"] = "balanced"
    lw.train(cfg, output=tmp_path / "a")
    cfg["outputs"][0]["class_weights"] = {"high": 3.0}
    run = lw.train(cfg, output=tmp_path / "b")
    from safetensors.torch import load_file

    w = load_file(str(run.model_dir / "model.safetensors"))["heads.label.class_weight"]
    assert w.tolist() == [3.0, 1.0]
    cfg["outputs"][0]["class_weights"] = {"medium": 2.0}
    with pytest.raises(lw.errors.ConfigError, match="medium"):
        lw.train(cfg, output=tmp_path / "c")


def test_image_folder_trains_and_predicts_from_files(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for cls, bright in (("dark", 40), ("light", 210)):
        (root / cls).mkdir(parents=True)
        for i in range(30):
            px = np.clip(rng.normal(bright, 20, size=(10, 12)), 0, 255).astype(np.uint8)
            Image.fromarray(px, mode="L").save(root / cls / f"{i}.png")
    cfg = {"name": "folder", "data": {"path": str(root)},
           "inputs": [{"name": "image", "type": "image", "size": [8, 8],
                       "augment": {"shift": 1, "flip": True, "noise": 0.05}}],
           "outputs": [{"name": "label", "type": "category"}],
           "model": {"family": "cnn", "blocks": [{"filters": 4, "pool": "max"}],
                     "dense": [8]},
           "train": {"epochs": 8, "batch_size": 8, "progress": "quiet",
                     "optimizer": {"lr": 0.01}}}
    run = lw.train(cfg, output=tmp_path / "run")
    assert run.metrics["test"]["accuracy"] == 1.0
    model = lw.load(run.model_dir)
    files = [str(root / "dark" / "0.png"), str(root / "light" / "0.png")]
    assert [p["label"] for p in model.predict(files)] == ["dark", "light"]
    rgb = tmp_path / "rgb.png"  # a colour file of another size is converted and resized
    Image.fromarray(np.full((20, 20, 3), 220, dtype=np.uint8)).save(rgb)
    assert model.predict(str(rgb))[0]["label"] == "light"


def test_progress_modes_do_not_change_results(tiny_mlp: dict[str, Any], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    tiny_mlp["train"]["progress"] = "bar"
    a = lw.train(tiny_mlp, output=tmp_path / "a")
    tiny_mlp["train"]["progress"] = "log"
    b = lw.train(tiny_mlp, output=tmp_path / "b")
    assert "epoch 3/3" in capsys.readouterr().err
    assert a.metrics["test"]["accuracy"] == b.metrics["test"]["accuracy"]


def test_metrics_json_holds_classification_details(tiny_mlp: dict[str, Any],
                                                   tmp_path: Path) -> None:
    run = lw.train(tiny_mlp, output=tmp_path / "run")
    m = json.loads((run.dir / "metrics.json").read_text())
    test = m["test"]
    assert len(test["confusion_matrix"]) == 3 and len(test["per_class"]) == 3
    assert {"precision", "recall", "f1", "support"} <= set(test["per_class"]["class_0"])
    assert m["training"]["samples_per_second"] > 0
    card = (run.model_dir / "card.md").read_text()
    assert "Per class on the test split" in card and "class_0" in card


def test_augmentations_are_seeded_and_keep_shapes() -> None:
    x = torch.arange(2 * 1 * 5 * 5, dtype=torch.float32).view(2, 1, 5, 5)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    a, b = shift(x, 2, g1), shift(x, 2, g2)
    assert a.shape == x.shape and torch.equal(a, b)
    # a shifted image keeps its pixels (those still inside), nothing else
    assert set(a[0].unique().tolist()) <= set(x[0].unique().tolist()) | {0.0}
    f = flip(x, torch.Generator().manual_seed(0))
    assert all(torch.equal(f[i], x[i]) or torch.equal(f[i], x[i].flip(2)) for i in range(2))
    aug = Augmenter({"image": AugmentConfig(shift=1, flip=True, noise=0.1)}, seed=3)
    out = aug({"image": x, "other": x})
    assert out["image"].shape == x.shape and torch.equal(out["other"], x)
    assert not Augmenter({"image": AugmentConfig()}, seed=3)


def test_image_paths_in_a_csv_are_relative_to_the_csv(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    from layerwise.config import parse
    from layerwise.data.build import build

    (tmp_path / "pics").mkdir()
    rows = []
    for i in range(12):
        pixels = np.full((6, 6), 20 * i, dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "pics" / f"{i}.png")
        rows.append({"file": f"pics/{i}.png", "label": "a" if i % 2 else "b"})
    pd.DataFrame(rows).to_csv(tmp_path / "index.csv", index=False)
    monkeypatch.chdir(tmp_path.parent)  # not the CSV's folder
    ds = build(parse({"data": {"path": str(tmp_path / "index.csv"), "split": {"test": 0.25}},
                      "inputs": [{"name": "file", "type": "image"}],
                      "outputs": [{"name": "label", "type": "category"}],
                      "model": {"family": "cnn"}}))
    assert ds.train.inputs["file"].shape[1:] == (1, 6, 6)
