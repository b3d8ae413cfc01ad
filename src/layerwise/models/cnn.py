"""Convolutional network over one image input; tabular inputs join the dense head.

A series input (a row of L values per sample, ``[B, L, 1]``, data/rows.py) takes the same
path in one dimension: the blocks are ``Conv1d`` / ``BatchNorm1d`` / 1-D pooling over its
steps, from the very ``blocks`` config (kernel, stride, pool_size count steps).

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

# convolution and batch norm, and the pools, of 1-D (series) and 2-D (image) inputs
_LAYERS: dict[int, tuple[type[nn.Module], type[nn.Module]]] = {
    1: (nn.Conv1d, nn.BatchNorm1d), 2: (nn.Conv2d, nn.BatchNorm2d)}
_POOLS: dict[int, dict[str, type[nn.Module]]] = {
    1: {"max": nn.MaxPool1d, "avg": nn.AvgPool1d}, 2: {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}}


class ConvStage(nn.Module):
    """One ConvBlock: ``layers`` convolutions, optional residual, then pool and dropout."""

    def __init__(self, spec: ConvBlock, in_ch: int, act: str, batch_norm: bool,
                 residual: bool, dims: int = 2) -> None:
        super().__init__()
        pad = spec.kernel // 2 if spec.padding == "same" else spec.padding
        convs: list[nn.Module] = []
        ch = in_ch
        conv, norm = _LAYERS[dims]
        pool = _POOLS[dims].get(spec.pool or "")
        early = pool is not None and spec.pool_before_norm
        for i in range(spec.layers):
            stride = spec.stride if i == 0 else 1
            convs.append(conv(ch, spec.filters, spec.kernel, stride, pad,
                              bias=not batch_norm))
            if early and i == spec.layers - 1:
                convs.append(pool(spec.pool_size))  # type: ignore[misc]
            if batch_norm:
                convs.append(norm(spec.filters))
            if i < spec.layers - 1 or not residual:
                convs.append(activation(act))
            ch = spec.filters
        self.convs = nn.Sequential(*convs)
        self.skip: nn.Module | None = None
        if residual:
            same = in_ch == spec.filters and spec.stride == 1
            self.skip = nn.Identity() if same else nn.Sequential(
                conv(in_ch, spec.filters, 1, spec.stride, bias=False),
                *([norm(spec.filters)] if batch_norm else []))
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
        self.image_name, in_ch, shape = _source(desc)
        self.dims = len(shape)  # 1: a series row [B, L, 1] read as [B, 1, L]; 2: an image
        stages, ch = [], in_ch
        for spec in cfg.blocks:
            stage = ConvStage(spec, ch, cfg.activation, cfg.batch_norm, cfg.residual,
                              self.dims)
            stages.append(stage)
            ch = stage.out_channels
        self.stages = nn.Sequential(*stages)
        left = _feature_map(self.stages, in_ch, shape)
        if not left or min(left) == 0:
            what = f"{shape[0]}-step series" if self.dims == 1 else \
                f"{shape[0]}x{shape[1]} image"
            raise ConfigError(f"model.blocks shrink a {what} to nothing; use fewer "
                              "pooling or strided blocks")
        self.global_pool = cfg.global_pool
        feat = ch if cfg.global_pool != "flatten" else ch * int(torch.tensor(left).prod())
        self.tabular = TabularEncoder.from_schema(desc)
        self.dense, self.out_features = dense_stack(feat + self.tabular.out_features, cfg.dense,
                                                    cfg.activation, cfg.dropout)
        if cfg.dropout and not cfg.dense:  # no dense layers: the features still drop out
            self.dense = nn.Sequential(nn.Dropout(cfg.dropout))

    @classmethod
    def from_config(cls, cfg: CNNConfig, desc: dict[str, Any]) -> CNN:
        return cls(cfg, desc)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        x = inputs[self.image_name]
        if isinstance(x, dict):  # an audio input: {"mels": [B, 1, M, T], "lengths": [B]}
            x = x["mels"]
        if self.dims == 1:
            x = x.transpose(1, 2)                         # [B, L, 1] → [B, 1, L]
        x = self.stages(x)                                # [B, C', H', W'] or [B, C', L']
        space = (2, 3) if self.dims == 2 else (2,)
        if self.global_pool == "avg":
            x = x.mean(dim=space)                         # [B, C']
        elif self.global_pool == "max":
            x = x.amax(dim=space)
        else:
            x = x.flatten(1)
        tab = self.tabular(inputs)
        if tab is not None:
            x = torch.cat([x, tab], dim=1)
        return self.dense(x)


def _source(desc: dict[str, Any]) -> tuple[str, int, tuple[int, ...]]:
    """The one input the convolutions read: (name, channels, spatial shape) of an image
    ``(C, H, W)`` or of a series row (1 channel, L steps)."""
    images, rows = desc["images"], desc.get("rows", {})
    # an audio input's spectrogram is a one-channel image: mel channels × frames
    images = {**images, **{n: a["shape"] for n, a in desc.get("audio", {}).items()}}
    if len(images) + len(rows) != 1:
        names = [*images, *rows]
        raise ConfigError(f"model cnn needs exactly one image input (or one series input); "
                          f"got {len(names)} ({', '.join(names) or 'none'})")
    if rows:
        name, spec = next(iter(rows.items()))
        return name, int(spec["channels"]), (int(spec["lookback"]),)
    name, (ch, h, w) = next(iter(images.items()))
    return name, int(ch), (int(h), int(w))


def _feature_map(stages: nn.Module, channels: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The spatial shape the stages leave of an input (empty: nothing is left)."""
    stages.eval()  # batch norm cannot run on one probe row in training mode
    try:
        with torch.no_grad():
            return tuple(stages(torch.zeros(1, channels, *shape)).shape[2:])
    except RuntimeError:  # a kernel or pool larger than what is left of the input
        return ()
    finally:
        stages.train()
