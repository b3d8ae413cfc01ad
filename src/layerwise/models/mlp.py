"""Multi-layer perceptron: every tabular input (and flattened images) → hidden layers.

    x = concat(numeric, embeddings(category), flatten(images), flatten(series rows))
                                                                  # [B, F_in]
    for width in hidden:  x = dropout(act(norm(linear(x))))       # [B, width]
    skip: true → concat(x, inputs): the heads see the inputs too (wide and deep)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from layerwise.config import MLPConfig
from layerwise.errors import ConfigError
from layerwise.models.layers import TabularEncoder, cat_features, dense_stack
from layerwise.models.registry import register_model


@register_model("mlp")
class MLP(nn.Module):
    config_class = MLPConfig  # declares what the family reads and predicts

    def __init__(self, cfg: MLPConfig, desc: dict[str, Any]) -> None:
        super().__init__()
        self.tabular = TabularEncoder.from_schema(desc)
        self.image_names = sorted(desc["images"])
        rows = desc.get("rows", {})  # series rows [B, L, 1], flattened like images
        self.image_names += sorted(rows)
        in_features = self.tabular.out_features + sum(
            c * h * w for c, h, w in (desc["images"][n] for n in sorted(desc["images"])))
        in_features += sum(r["lookback"] * r["channels"] for r in rows.values())
        if in_features == 0:
            raise ConfigError("model mlp needs at least one input feature")
        self.body, self.out_features = dense_stack(in_features, cfg.hidden, cfg.activation,
                                                   cfg.dropout, cfg.norm)
        self.skip = cfg.skip and bool(cfg.hidden)  # no hidden layers: linear already
        if self.skip:  # wide and deep (Cheng et al., 2016): [hidden features, inputs]
            self.out_features += in_features

    @classmethod
    def from_config(cls, cfg: MLPConfig, desc: dict[str, Any]) -> MLP:
        return cls(cfg, desc)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = [inputs[n].flatten(1) for n in self.image_names]
        tab = self.tabular(inputs)
        if tab is not None:
            parts.append(tab)
        x = cat_features(parts)                                       # [B, F_in]
        h = self.body(x)                                              # [B, F]
        return torch.cat([h, x], dim=1) if self.skip else h
