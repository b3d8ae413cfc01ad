"""Sample-quality judge, Fréchet distance, sample grids and the anomaly report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from layerwise.config import parse
from layerwise.data.build import build
from layerwise.evaluation import judge as judge_mod
from layerwise.evaluation.generative import sample_grid, write_grid
from layerwise.evaluation.judge import frechet_distance, sample_quality
from layerwise.models.generative import DataSpec


def test_frechet_distance_of_known_gaussians() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4000, 3, generator=g)
    b = torch.randn(4000, 3, generator=g)
    assert frechet_distance(a, b) < 0.02
    shifted = b + torch.tensor([2.0, 0.0, 0.0])
    assert frechet_distance(a, shifted) == pytest.approx(4.0, abs=0.1)
    # same mean, std 2 instead of 1 in every dimension: 3 * (1 + 4 - 2*2) = 3
    assert frechet_distance(a, b * 2) == pytest.approx(3.0, abs=0.15)


def _cfg() -> Any:
    return parse({"name": "stub", "data": {"dataset": "digits"},
                  "inputs": [{"name": "image", "type": "image"},
                             {"name": "label", "type": "category"}],
                  "model": {"family": "vae", "condition": "label"}})


class Stub:
    """A 'generative model' whose samples are real training images of the asked class,
    or uniform noise."""

    def __init__(self, cfg: Any, ds: Any, noise: bool = False) -> None:
        self.cfg = cfg.model
        self.spec = DataSpec(cfg.model, ds.schema.describe())
        self.images = self.spec.to_pixels(ds.train.inputs["image"])
        self.labels = ds.train.inputs["category"][:, 0]
        self.noise = noise

    def sample(self, n: int, *, labels: torch.Tensor | None = None, steps: int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        if self.noise:
            return torch.rand(n, *self.spec.shape, generator=generator)
        assert labels is not None and int(labels.min()) >= 1
        out = []
        for k in labels.tolist():
            pool = torch.nonzero(self.labels == k).flatten()
            out.append(self.images[pool[torch.randint(len(pool), (1,), generator=generator)]])
        return torch.cat(out)


def test_judge_scores_real_samples_near_the_floor_and_noise_far(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAYERWISE_CACHE", str(tmp_path))
    cfg = _cfg()
    ds = build(cfg)
    real = sample_quality(Stub(cfg, ds), cfg, ds, n=300, seed=0)
    noise = sample_quality(Stub(cfg, ds, noise=True), cfg, ds, n=300, seed=0)
    assert real["judge_test_accuracy"] > 0.85
    assert real["class_accuracy"] > 0.85  # real images of the asked class
    assert real["frechet_distance"] < 3 * real["frechet_floor_real_train_vs_test"] + 1.0
    assert noise["frechet_distance"] > 10 * real["frechet_distance"]
    assert noise["class_accuracy"] < 0.5
    # the judge is cached: the second use loads it instead of training again
    cached = list((tmp_path / "judges").iterdir())
    assert len(cached) == 1 and (cached[0] / "weights.safetensors").is_file()
    stamp = (cached[0] / "weights.safetensors").stat().st_mtime_ns
    again = sample_quality(Stub(cfg, ds), cfg, ds, n=300, seed=0)
    assert (cached[0] / "weights.safetensors").stat().st_mtime_ns == stamp
    assert again["frechet_distance"] == pytest.approx(real["frechet_distance"])


def test_judge_is_shared_across_data_limits(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAYERWISE_CACHE", str(tmp_path))
    a, b = _cfg(), _cfg()
    b.data.limit = 500
    b.data.split.validation = 0.3
    assert judge_mod._judge_config(a, "label").data == judge_mod._judge_config(b, "label").data


def test_sample_quality_without_a_class_column_says_why() -> None:
    cfg = parse({"name": "u", "data": {"dataset": "digits"},
                 "inputs": [{"name": "image", "type": "image"}], "model": {"family": "vae"}})
    out = sample_quality(object(), cfg, None)  # type: ignore[arg-type]
    assert "quality_label" in out["skipped"]


def test_sample_grid_has_one_row_per_class(tmp_path: Path) -> None:
    cfg = _cfg()
    ds = build(cfg)
    path = sample_grid(Stub(cfg, ds), tmp_path / "grid.png", cols=5)
    with Image.open(path) as im:
        w, h = im.size
    # 10 classes x 5 columns of 8x8 images with 2-pixel gaps, scaled 16x
    assert (w, h) == ((5 * 10 + 2) * 16, (10 * 10 + 2) * 16)


def test_write_grid_keeps_pixel_values(tmp_path: Path) -> None:
    x = torch.zeros(2, 1, 4, 4)
    x[1] = 1.0
    write_grid(x, tmp_path / "g.png", cols=2, pad=0)
    arr = np.asarray(Image.open(tmp_path / "g.png"))
    assert arr.shape[1] == 2 * arr.shape[0]
    assert arr[:, : arr.shape[1] // 2].max() == 0 and arr[:, arr.shape[1] // 2:].min() == 255


def test_judging_without_held_out_rows_is_a_clear_error() -> None:
    import dataclasses

    from layerwise.errors import ConfigError

    ds = build(_cfg())
    empty = dataclasses.replace(ds, test=None, validation=None)
    with pytest.raises(ConfigError, match="no test or validation rows"):
        judge_mod.held_out(empty)
    assert judge_mod.held_out(ds) is ds.test
