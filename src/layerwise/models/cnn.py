"""Convolutional network over one image input; tabular inputs join the dense head.

    image [B, C, H, W]
      → blocks: (conv → batch norm → act) × layers  (+ skip connection if residual)
                → pool → dropout
      → global pool (avg | max) or flatten         [B, F]
      → concat tabular features                    [B, F + T]
      → dense layers                               [B, dense[-1]]
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from layerwise.config import CNNConfig, ConvBlock
from layerwise.errors import ConfigError
from layerwise.models.layers import TabularEncoder, activation, dense_stack
from layerwise.models.registry import register_model


class ConvStage(nn.Module):
    """One ConvBlock: ``layers`` convolutions, optional residual, then pool and dropout."""

    def __init__(self, spec: ConvBlock, in_ch: int, act: str, batch_norm: bool,
                 residual: bool) -> None:
        super().__init__()
        pad = spec.kernel // 2 if spec.padding == "same" else spec.padding
        convs: list[nn.Module] = []
        ch = in_ch
        pool = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}.get(spec.pool or "")
        early = pool is not None and spec.pool_before_norm
        for i in range(spec.layers):
            stride = spec.stride if i == 0 else 1
            convs.append(nn.Conv2d(ch, spec.filters, spec.kernel, stride, pad,
                                   bias=not batch_norm))
            if early and i == spec.layers - 1:
                convs.append(pool(spec.pool_size))  # type: ignore[misc]
            if batch_norm:
                convs.append(nn.BatchNorm2d(spec.filters))
            if i < spec.layers - 1 or not residual:
                convs.append(activation(act))
            ch = spec.filters
        self.convs = nn.Sequential(*convs)
        self.skip: nn.Module | None = None
        if residual:
            same = in_ch == spec.filters and spec.stride == 1
            self.skip = nn.Identity() if same else nn.Sequential(
                nn.Conv2d(in_ch, spec.filters, 1, spec.stride, bias=False),
                *([nn.BatchNorm2d(spec.filters)] if batch_norm else []))
            self.post = activation(act)
        self.pool = pool(spec.pool_size) if pool and not early else nn.Identity()
        self.drop = nn.Dropout(spec.dropout) if spec.dropout else nn.Identity()
        self.out_channels = spec.filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.convs(x)
        if self.skip is not None:
            y = self.post(y + self.skip(x))
        return self.drop(self.pool(y))


@register_model("cnn")
class CNN(nn.Module):
    config_class = CNNConfig  # declares what the family reads and predicts

    def __init__(self, cfg: CNNConfig, desc: dict[str, Any]) -> None:
        super().__init__()
        images = desc["images"]
        if len(images) != 1:
            raise ConfigError(f"model cnn needs exactly one image input; got {len(images)} "
                              f"({', '.join(images) or 'none'})")
        self.image_name, (ch, h, w) = next(iter(images.items()))
        stages = []
        for spec in cfg.blocks:
            stage = ConvStage(spec, ch, cfg.activation, cfg.batch_norm, cfg.residual)
            stages.append(stage)
            ch = stage.out_channels
        self.stages = nn.Sequential(*stages)
        fh = fw = 0
        self.stages.eval()  # batch norm cannot run on one probe row in training mode
        with torch.no_grad():  # find the feature map size once
            try:
                fh, fw = self.stages(torch.zeros(1, images[self.image_name][0], h, w)).shape[2:]
            except RuntimeError:  # a kernel or pool larger than what is left of the image
                pass
        self.stages.train()
        if fh == 0 or fw == 0:
            raise ConfigError(f"model.blocks shrink a {h}x{w} image to nothing; use fewer "
                              "pooling or strided blocks")
        self.global_pool = cfg.global_pool
        feat = ch if cfg.global_pool != "flatten" else ch * fh * fw
        self.tabular = TabularEncoder.from_schema(desc)
        self.dense, self.out_features = dense_stack(feat + self.tabular.out_features, cfg.dense,
                                                    cfg.activation, cfg.dropout)
        if cfg.dropout and not cfg.dense:  # no dense layers: the features still drop out
            self.dense = nn.Sequential(nn.Dropout(cfg.dropout))

    @classmethod
    def from_config(cls, cfg: CNNConfig, desc: dict[str, Any]) -> CNN:
        return cls(cfg, desc)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        x = self.stages(inputs[self.image_name])        # [B, C', H', W']
        if self.global_pool == "avg":
            x = x.mean(dim=(2, 3))                        # [B, C']
        elif self.global_pool == "max":
            x = x.amax(dim=(2, 3))
        else:
            x = x.flatten(1)
        tab = self.tabular(inputs)
        if tab is not None:
            x = torch.cat([x, tab], dim=1)
        return self.dense(x)
