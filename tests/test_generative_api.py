"""Generative families through the declarative rung and the CLI: anomaly threshold in the
artifact, predict/embed on a loaded model, `layerwise sample` / `layerwise embed`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_digits

import layerwise as lw
from layerwise.cli import main
from layerwise.config import parse
from layerwise.errors import ConfigError


def ae_config(**model: Any) -> dict[str, Any]:
    return {"name": "ae", "seed": 0, "data": {"dataset": "digits"},
            "inputs": [{"name": "image", "type": "image"}, {"name": "label", "type": "category"}],
            "model": {"family": "autoencoder", "channels": [8, 16], "bottleneck": 8,
                      "anomaly": {"label": "label", "normal": ["0", "1", "2"], "fpr": 0.1},
                      **model},
            "train": {"epochs": 2, "batch_size": 64, "progress": "quiet"}}


@pytest.fixture(scope="module")
def ae_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return lw.train(ae_config(), output=tmp_path_factory.mktemp("ae"))


def test_anomaly_run_trains_on_normal_rows_and_reports(ae_run: Any) -> None:
    m = ae_run.metrics
    a = m["anomaly"]
    # digits 0-2 are ~30% of the 1,797 rows; train + validation keep only those
    assert m["data"]["anomaly"]["train_rows"] == m["train"]["count"] < 0.35 * 1797 * 0.7 + 20
    assert m["test"]["count"] == a["test_rows"] > a["test_anomalies"] > 0
    assert 0 <= a["roc_auc"] <= 1 and a["threshold"] > 0
    assert a["threshold_from"] == "validation" and a["target_fpr"] == 0.1


def test_loaded_model_flags_rows_with_the_saved_threshold(ae_run: Any) -> None:
    p = lw.load(ae_run.model_dir)
    images = load_digits().images[:5] * 16
    out = p.predict(images)  # the label column (a role) may be left out
    assert [set(r) for r in out] == [{"score", "threshold", "anomaly"}] * 5
    assert out[0]["threshold"] == pytest.approx(ae_run.metrics["anomaly"]["threshold"])
    assert all(r["anomaly"] == (r["score"] > r["threshold"]) for r in out)
    with_labels = p.predict([{"image": images[i], "label": "7"} for i in range(5)])
    assert [r["score"] for r in with_labels] == pytest.approx([r["score"] for r in out],
                                                              rel=1e-5)
    assert p.embed(images).shape == (5, 8)
    with pytest.raises(ConfigError, match="sample needs a generative model"):
        p.sample(4)


def test_cli_embed_and_sample_errors(ae_run: Any, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    rows = tmp_path / "rows.npz"
    np.savez(rows, image=(load_digits().images[:7] * 16).astype(np.uint8))
    assert main(["embed", str(ae_run.model_dir), str(rows), "--output",
                 str(tmp_path / "z.npz")]) == 0
    assert np.load(tmp_path / "z.npz")["embeddings"].shape == (7, 8)
    assert main(["sample", str(ae_run.model_dir), "--output", str(tmp_path / "g.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: sample needs a generative model") and "Traceback" not in err


def test_generative_config_errors_name_the_key() -> None:
    cfg = ae_config()
    cfg["outputs"] = [{"name": "digit", "type": "category"}]
    with pytest.raises(ConfigError, match="learns from its inputs alone"):
        parse(cfg)
    cfg = ae_config(condition="image")
    with pytest.raises(ConfigError, match="model.condition 'image' must name a category input"):
        parse(cfg)
    bad = ae_config(anomaly={"label": "label", "normal": ["zero"]})
    with pytest.raises(ConfigError, match=r"normal names values \['zero'\]"):
        lw.train(bad, output=None)
    sup = {"data": {"dataset": "digits"}, "inputs": [{"name": "image", "type": "image"}],
           "model": {"family": "cnn"}}
    with pytest.raises(ConfigError, match="needs at least one output"):
        parse(sup)


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    cfg = {"name": "vae", "seed": 0, "data": {"dataset": "digits"},
           "inputs": [{"name": "image", "type": "image"},
                      {"name": "label", "type": "category"}],
           "model": {"family": "vae", "condition": "label", "channels": [8, 16], "latent": 4},
           "train": {"epochs": 1, "batch_size": 64, "progress": "quiet", "threads": 1}}
    return lw.train(cfg, output=tmp_path_factory.mktemp("vae"))


def test_cli_sample_writes_grid_files_and_npz(vae_run: Any, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    model = str(vae_run.model_dir)
    assert (vae_run.dir / "samples.png").is_file()  # every sampling run writes its grid
    assert main(["sample", model, "--list-classes"]) == 0
    assert capsys.readouterr().out.split() == [str(d) for d in range(10)]
    assert main(["sample", model, "--n", "6", "--class", "3", "--cols", "3", "--output",
                 str(tmp_path / "g.png"), "--output-dir", str(tmp_path / "png")]) == 0
    assert Image.open(tmp_path / "g.png").format == "PNG"
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == [
        f"sample_{i:04d}.png" for i in range(6)]
    assert main(["sample", model, "--n", "5", "--seed", "1", "--output-dir",
                 str(tmp_path / "z"), "--format", "npz"]) == 0
    images = np.load(tmp_path / "z" / "samples.npz")["images"]
    assert images.shape == (5, 1, 8, 8) and 0.0 <= images.min() and images.max() <= 1.0
    # the same seed draws the same samples; the class changes them
    p = lw.load(vae_run.model_dir)
    np.testing.assert_array_equal(p.sample(5, seed=1), images)
    assert not np.array_equal(p.sample(4, label="3"), p.sample(4, label="8"))
    capsys.readouterr()
    assert main(["sample", model, "--class", "eleven", "--output", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "unknown class 'eleven'; classes: 0, 1, 2" in err and "Traceback" not in err
    assert main(["sample", model]) == 2  # nowhere to write
