"""Test-time augmentation (inputs.<image>.tta): the mirror image's outputs averaged in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from layerwise.api import evaluate, train
from layerwise.errors import ConfigError
from layerwise.evaluation import splits
from layerwise.inference.predictor import Predictor
from layerwise.models.model import LayerwiseModel

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_saved_model_averages_the_image_and_its_mirror(tiny_cnn: dict[str, Any],
                                                         tmp_path: Path) -> None:
    tiny_cnn["inputs"][0]["tta"] = True
    run = train(tiny_cnn, output=tmp_path / "run")
    pred = Predictor.load(run.model_dir)
    model = pred.model
    assert model.tta == ["image"]
    x = splits.encoded(pred, splits.rebuild(pred, run.model_dir), "test",
                       run.model_dir).inputs
    batch = {k: v[:16] for k, v in x.items()}
    model.eval()
    with torch.inference_mode():
        got = model(batch)["label"]
        plain = model._forward(batch)["label"]
        mirror = model._forward({"image": batch["image"].flip(-1)})["label"]
    assert torch.allclose(got, (plain + mirror) / 2)
    assert not torch.allclose(got, plain)  # digits are not symmetric: the mirror counts
    model.train()
    torch.manual_seed(0)
    a = model(batch)["label"]
    torch.manual_seed(0)
    assert torch.equal(a, model._forward(batch)["label"])  # training sees one view
    # evaluate reads the same model: its test accuracy is the averaged one
    right = 0
    test = splits.encoded(pred, splits.rebuild(pred, run.model_dir), "test", run.model_dir)
    model.eval()
    with torch.inference_mode():
        right = int((model(test.inputs)["label"].argmax(1) == test.targets["label"]).sum())
    assert evaluate(run.model_dir)["accuracy"] == pytest.approx(right / len(test))


def test_off_by_default(tiny_cnn: dict[str, Any], tmp_path: Path) -> None:
    run = train(tiny_cnn, output=tmp_path / "run")
    assert Predictor.load(run.model_dir).model.tta == []


def test_outputs_that_cannot_be_averaged_are_refused() -> None:
    class Tags(nn.Module):
        name, kind = "tags", "tags"

    with pytest.raises(ConfigError, match="inputs.image.tta.*outputs tags"):
        LayerwiseModel(nn.Identity(), [Tags()], tta=["image"])  # type: ignore[list-item]


def test_the_onnx_export_carries_the_mirror(tiny_cnn: dict[str, Any], tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from layerwise.compress.export import export

    tiny_cnn["inputs"][0]["tta"] = True
    run = train(tiny_cnn, output=tmp_path / "run")
    out = export(run.model_dir, tmp_path / "m.onnx")
    assert out["max_abs_diff"] < 1e-4 and out["rows_checked"] > 0  # against eager, with tta
