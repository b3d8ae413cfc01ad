"""Inference batches sized to fit memory: evaluation of a large-image model at 2,048 rows a
batch ran out of 24 GiB (EfficientNet-Lite0 at 192² on Fashion-MNIST's 10k test images)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from layerwise.api import _outputs
from layerwise.data import batching
from layerwise.data.batching import TensorData, inference_rows


class _Wide(nn.Module):
    """8 channels at 32×32: 32 KiB of float32 per row in its largest layer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.norm = nn.BatchNorm2d(8)
        self.batches: list[int] = []

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = inputs["image"]
        self.batches.append(len(x))
        return {"label": self.norm(self.conv(x)).mean(dim=(1, 2, 3))[:, None]}


def _data(n: int) -> TensorData:
    return TensorData({"image": torch.randn(n, 1, 32, 32)}, {"label": torch.zeros(n)})


def test_rows_follow_the_largest_activation_and_keep_the_cap() -> None:
    model, data = _Wide(), _data(100)
    per_row = 4 * 8 * 32 * 32 * 4                     # four times 32 KiB
    assert inference_rows(model, data.inputs, 2048, budget=per_row * 10) == 10
    assert inference_rows(model, data.inputs, 2048, budget=1 << 30) == 2048
    assert inference_rows(model, data.inputs, 16, budget=1 << 30) == 16
    assert inference_rows(model, data.inputs, 2048, budget=1) == 1


def test_the_default_budget_keeps_large_activations_to_small_batches(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # big activations run slower per row in big batches on the CPU (INFERENCE_BUDGET):
    # 128 KiB per row gets 512 rows by default; 16 times that, 32 rows
    model, data = _Wide(), _data(1000)
    assert inference_rows(model, data.inputs, 2048) == 512
    big = TensorData({"image": torch.randn(100, 1, 128, 128)}, {"label": torch.zeros(100)})
    assert inference_rows(model, big.inputs, 2048) == 32
    # on a GPU, large batches pay: the budget there is memory's (1 GiB)
    monkeypatch.setattr(batching, "_on_cuda", lambda forward: True)
    assert inference_rows(model, big.inputs, 2048) == 512


def test_the_probe_leaves_the_model_as_it_found_it() -> None:
    model, data = _Wide(), _data(100)
    before = model.norm.running_mean.clone()
    inference_rows(model, data.inputs, 2048, budget=1 << 20)
    assert model.training and torch.equal(model.norm.running_mean, before)
    assert model.norm.num_batches_tracked.item() == 0


def test_evaluation_batches_fit_the_budget_and_give_the_same_outputs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    model, data = _Wide(), _data(300)
    model.eval()
    whole = _outputs(model, None, data, 2048)["label"]
    assert model.batches == [2, 300]                  # the probe, then one batch
    monkeypatch.setattr(batching, "INFERENCE_BUDGET", 4 * 8 * 32 * 32 * 4 * 64)
    model.batches = []
    parts = _outputs(model, None, data, 2048)["label"]
    assert model.batches == [2, 64, 64, 64, 64, 44]
    assert torch.allclose(parts, whole, atol=1e-6)
