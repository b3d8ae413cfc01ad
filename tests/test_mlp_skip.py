"""The MLP's ``skip: true`` (wide and deep, issue 11): the heads see the inputs beside the
hidden features, so with silent hidden layers the model is exactly linear in its inputs."""

from __future__ import annotations

import pytest
import torch

from layerwise.config import CategoryOutput, parse
from layerwise.models.model import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(skip: bool) -> torch.nn.Module:
    cfg = parse({"data": {"dataset": "wine"}, "inputs": [{"name": "a", "type": "numeric"}],
                 "outputs": [{"name": "y", "type": "category"}],
                 "model": {"family": "mlp", "hidden": [8, 4], "skip": skip}}).model
    desc = {"numeric_dim": 5, "category_sizes": [], "category_dims": [], "images": {},
            "outputs": {"y": ("category", 3)}}
    return build_model(cfg, [CategoryOutput(name="y", type="category")], desc)


def test_the_skip_joins_the_inputs_to_the_features() -> None:
    assert _model(False).backbone.out_features == 4
    assert _model(True).backbone.out_features == 4 + 5


def test_with_silent_hidden_layers_the_skip_model_is_linear() -> None:
    torch.manual_seed(0)
    model = _model(True).eval()
    last = [m for m in model.backbone.body if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(-1.0)  # relu(-1) = 0: the hidden path says nothing
    x = torch.randn(3, 5)

    def f(v: torch.Tensor) -> torch.Tensor:
        return model({"numeric": v})["y"]

    zero = f(torch.zeros(3, 5))
    assert torch.allclose(f(2 * x) - zero, 2 * (f(x) - zero), atol=1e-5)
    plain = _model(False).eval()
    assert plain.backbone.out_features != model.backbone.out_features
