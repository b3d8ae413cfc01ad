"""Image augmentation on whole batches (no per-sample Python), from a seeded generator.

The generator's state is saved in checkpoints, so resumed runs draw the same augmentations.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def shift(x: torch.Tensor, max_shift: int, g: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels (zero padding). x: [B, C, H, W]."""
    B, C, H, W = x.shape
    s = max_shift
    padded = F.pad(x, (s, s, s, s))
    dy = torch.randint(0, 2 * s + 1, (B,), generator=g)
    dx = torch.randint(0, 2 * s + 1, (B,), generator=g)
    rows = (torch.arange(H).view(1, H) + dy.view(B, 1))  # [B, H]
    cols = (torch.arange(W).view(1, W) + dx.view(B, 1))  # [B, W]
    b = torch.arange(B).view(B, 1, 1)
    # advanced indexing on dims 0, 2, 3 → [B, H, W, C]; move channels back
    out = padded.permute(0, 2, 3, 1)[b, rows.view(B, H, 1), cols.view(B, 1, W)]
    return out.permute(0, 3, 1, 2).contiguous(memory_format=_fmt(x))


def flip(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Flip each image horizontally with probability 1/2."""
    mask = torch.rand(x.shape[0], generator=g) < 0.5
    return torch.where(mask.view(-1, 1, 1, 1), x.flip(3), x)


def noise(x: torch.Tensor, std: float, g: torch.Generator) -> torch.Tensor:
    return x + std * torch.randn(x.shape, generator=g, dtype=x.dtype)


def _fmt(x: torch.Tensor) -> torch.memory_format:
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


class Augmenter:
    """Applies each image input's ``augment`` settings to a training batch."""

    def __init__(self, settings: dict[str, Any], seed: int) -> None:
        self.settings = {k: a for k, a in settings.items() if a.shift or a.flip or a.noise}
        self.generator = torch.Generator().manual_seed(seed + 7919)

    def __bool__(self) -> bool:
        return bool(self.settings)

    def __call__(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = dict(inputs)
        g = self.generator
        for name, a in self.settings.items():
            x = out[name]
            if a.shift:
                x = shift(x, a.shift, g)
            if a.flip:
                x = flip(x, g)
            if a.noise:
                x = noise(x, a.noise, g)
            out[name] = x
        return out
