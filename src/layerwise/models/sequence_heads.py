"""Output heads of sequences: a multi-step forecast and one tag per token.

==========  =================  ===============================  ==========================
type        head output        loss                             prediction
==========  =================  ===============================  ==========================
forecast    values [B, H]      MSE / MAE / Huber (scaled)       values (unscaled later)
tags        logits [B, T, n]   cross-entropy per real token     a tag per token
==========  =================  ===============================  ==========================
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class ForecastHead(nn.Module):
    """Features ``[B, F]`` → the next ``horizon`` values ``[B, H]`` (scaled). Targets are
    ``{"values": [B, H], "naive": [B, H]}`` (the seasonal-naive baseline, for metrics)."""

    kind = "forecast"

    def __init__(self, name: str, in_features: int, horizon: int, loss: str = "mse",
                 loss_weight: float = 1.0, scale: float = 1.0) -> None:
        super().__init__()
        self.name, self.loss_name, self.loss_weight = name, loss, loss_weight
        self.linear = nn.Linear(in_features, horizon)
        self.register_buffer("scale", torch.tensor(float(scale)))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(h)

    def loss(self, out: torch.Tensor, y: dict[str, torch.Tensor]) -> torch.Tensor:
        fn = {"mse": F.mse_loss, "mae": F.l1_loss, "huber": F.huber_loss}[self.loss_name]
        return fn(out.float(), y["values"])

    def metrics(self, out: torch.Tensor, y: dict[str, torch.Tensor]) -> dict[str, float]:
        err = (out.float() - y["values"]) * self.scale  # back in the target's own units
        naive = ((y["naive"] - y["values"]) * self.scale).abs().mean()
        return {"mae": err.abs().mean().item(), "rmse": err.pow(2).mean().sqrt().item(),
                "seasonal_naive_mae": naive.item()}


class TagsHead(nn.Module):
    """Per-token states ``[B, T, C]`` → tag logits ``[B, max_length, n]``.

    A batch is cut to its longest text; the logits are padded back to ``max_length`` (with
    zeros, never read: their targets are ``IGNORE``) so that batches concatenate."""

    kind = "tags"
    IGNORE = -100

    def __init__(self, name: str, in_features: int, n: int, max_length: int,
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        self.name, self.loss_weight, self.max_length = name, loss_weight, max_length
        self.linear = nn.Linear(in_features, n)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        logits = self.linear(h)                                        # [B, T, n]
        return F.pad(logits, (0, 0, 0, self.max_length - logits.shape[1]))

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out.flatten(0, 1).float(), y.flatten(), ignore_index=self.IGNORE)

    def metrics(self, out: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        valid = y != self.IGNORE
        hit = (out.argmax(-1) == y) & valid
        return {"token_accuracy": hit.sum().item() / max(1, int(valid.sum()))}


def sequence_head(cfg: Any, in_features: int, desc: dict[str, Any],
                  scale: float = 1.0) -> ForecastHead | TagsHead:
    """The head of a forecast or tags output config."""
    n = desc["outputs"][cfg.name][1]
    if cfg.type == "forecast":
        return ForecastHead(cfg.name, in_features, n, cfg.loss, cfg.loss_weight, scale)
    return TagsHead(cfg.name, in_features, n, desc["texts"][cfg.input]["max_length"],
                    cfg.loss_weight)
