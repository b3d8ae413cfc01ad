"""Shared fixtures: tiny configs on data that ships with scikit-learn."""

from __future__ import annotations

import copy
import os
from typing import Any

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# generative runs train and cache a judge classifier: keep the tests' judges out of ~/.cache
if "LAYERWISE_CACHE" not in os.environ:
    import tempfile

    os.environ["LAYERWISE_CACHE"] = tempfile.mkdtemp(prefix="layerwise-test-cache-")
# every run is recorded in the tracking store: keep the tests' records out of runs/ (and out
# of any store the environment names); tests of the store itself use their own
os.environ["LAYERWISE_TRACKING_URI"] = "sqlite:///" + os.path.join(
    __import__("tempfile").mkdtemp(prefix="layerwise-test-store-"), "layerwise.db")
torch.set_num_threads(min(2, os.cpu_count() or 1))

TINY_MLP: dict[str, Any] = {
    "name": "tiny_mlp",
    "seed": 0,
    "data": {"dataset": "wine"},
    "inputs": [{"name": n, "type": "numeric"} for n in
               ("alcohol", "malic_acid", "ash", "flavanoids", "color_intensity", "proline")],
    "outputs": [{"name": "target", "type": "category"}],
    "model": {"family": "mlp", "hidden": [16], "dropout": 0.1},
    "train": {"epochs": 3, "batch_size": 16, "progress": "quiet", "checkpoint_every": 5},
}

TINY_CNN: dict[str, Any] = {
    "name": "tiny_cnn",
    "seed": 0,
    "data": {"dataset": "digits", "limit": 300},
    "inputs": [{"name": "image", "type": "image", "augment": {"shift": 1}}],
    "outputs": [{"name": "label", "type": "category"}],
    "model": {"family": "cnn", "blocks": [{"filters": 8, "pool": "max"}], "dense": [16],
              "dropout": 0.1},
    "train": {"epochs": 2, "batch_size": 32, "progress": "quiet", "checkpoint_every": 3},
}


@pytest.fixture
def tiny_mlp() -> dict[str, Any]:
    return copy.deepcopy(TINY_MLP)


@pytest.fixture
def tiny_cnn() -> dict[str, Any]:
    return copy.deepcopy(TINY_CNN)


@pytest.fixture
def one_thread() -> Any:
    """Small models on a shared 2-core machine: a second thread only adds waiting (17x
    measured on a busy machine). Test files opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
