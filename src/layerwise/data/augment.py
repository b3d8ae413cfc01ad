"""Image augmentation and SpecAugment masks of audio inputs, on whole batches (no
per-sample Python), from a seeded generator.

The generator's state is saved in checkpoints, so resumed runs draw the same augmentations.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from layerwise.config.audio import SpecAugmentConfig


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


def spec_augment(x: dict[str, torch.Tensor], cfg: Any, g: torch.Generator
                 ) -> dict[str, torch.Tensor]:
    """Mask ``cfg.time_masks`` runs of frames and ``cfg.freq_masks`` bands of mel channels
    of each clip (widths uniform in ``[0, width]``), whole batch at once. The masked cells
    become 0, the channel mean; runs start within each clip's own frames."""
    mels, lengths = x["mels"], x["lengths"]
    b, _, m, t = mels.shape
    keep = torch.ones(b, m, t, dtype=torch.bool)
    for _ in range(cfg.time_masks):
        w = torch.randint(0, cfg.time_width + 1, (b,), generator=g)
        span = (lengths.cpu() - w).clamp(min=1)
        start = (torch.rand(b, generator=g) * span).long()
        pos = torch.arange(t)[None, :]
        hit = (pos >= start[:, None]) & (pos < (start + w)[:, None])          # [B, T]
        keep &= ~hit[:, None, :]
    for _ in range(cfg.freq_masks):
        w = torch.randint(0, min(cfg.freq_width, m) + 1, (b,), generator=g)
        start = (torch.rand(b, generator=g) * (m - w + 1)).long()
        pos = torch.arange(m)[None, :]
        hit = (pos >= start[:, None]) & (pos < (start + w)[:, None])          # [B, M]
        keep &= ~hit[:, :, None]
    masked = mels * keep[:, None].to(device=mels.device, dtype=mels.dtype)
    return {**x, "mels": masked}


def _fmt(x: torch.Tensor) -> torch.memory_format:
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def _active(a: Any) -> bool:
    """Whether augmentation settings change anything (image or audio settings)."""
    if isinstance(a, SpecAugmentConfig):
        return a.active
    return bool(a.shift or a.flip or a.noise)


class Augmenter:
    """Applies each image (or audio) input's ``augment`` settings to a training batch."""

    def __init__(self, settings: dict[str, Any], seed: int) -> None:
        self.settings = {k: a for k, a in settings.items() if _active(a)}
        self.generator = torch.Generator().manual_seed(seed + 7919)

    def __bool__(self) -> bool:
        return bool(self.settings)

    def __call__(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = dict(inputs)
        g = self.generator
        for name, a in self.settings.items():
            x = out[name]
            if isinstance(a, SpecAugmentConfig):  # an audio input: {"mels", "lengths"}
                out[name] = spec_augment(x, a, g)
                continue
            if a.shift:
                x = shift(x, a.shift, g)
            if a.flip:
                x = flip(x, g)
            if a.noise:
                x = noise(x, a.noise, g)
            out[name] = x
        return out
