"""Image augmentation (random resized crop, shift, flip, brightness/contrast, noise) and
SpecAugment masks of audio inputs, on whole batches (no per-sample Python), from a seeded
generator. An option that is off draws nothing, so adding options never changed the draws
of a config that does not use them.

The generator's state is saved in checkpoints, so resumed runs draw the same augmentations.
"""

from __future__ import annotations

import math
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


def resized_crop(x: torch.Tensor, min_area: float, g: torch.Generator) -> torch.Tensor:
    """Crop each image to a random part of at least ``min_area`` of its area (aspect ratio
    log-uniform in [3/4, 4/3], anywhere inside the image) and resize it back to [H, W],
    bilinear: SimCLR's random resized crop, the whole batch in one ``grid_sample``."""
    b = x.shape[0]
    area = min_area + (1 - min_area) * torch.rand(b, generator=g)
    ratio = torch.exp(math.log(3 / 4) + math.log(16 / 9) * torch.rand(b, generator=g))
    sx = torch.sqrt(area * ratio).clamp(max=1.0)   # width and height as shares of the image
    sy = torch.sqrt(area / ratio).clamp(max=1.0)
    tx = (1 - sx) * (2 * torch.rand(b, generator=g) - 1)  # the centre, inside the image
    ty = (1 - sy) * (2 * torch.rand(b, generator=g) - 1)
    zero = torch.zeros(b)
    theta = torch.stack([torch.stack([sx, zero, tx], 1), torch.stack([zero, sy, ty], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid.to(x.device), mode="bilinear", padding_mode="border",
                        align_corners=False)
    return out.contiguous(memory_format=_fmt(x))


def brightness_contrast(x: torch.Tensor, brightness: float, contrast: float,
                        g: torch.Generator) -> torch.Tensor:
    """Scale each image's deviation from its own mean by a factor in [1 - contrast,
    1 + contrast], then add an offset in [-brightness, brightness] (uniform, per image)."""
    b = x.shape[0]
    shape = (b, *([1] * (x.ndim - 1)))
    if contrast:
        f = 1 + contrast * (2 * torch.rand(b, generator=g) - 1)
        mean = x.mean(dim=tuple(range(1, x.ndim)), keepdim=True)
        x = mean + f.view(shape).to(x) * (x - mean)
    if brightness:
        x = x + brightness * (2 * torch.rand(b, generator=g) - 1).view(shape).to(x)
    return x


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


def is_active(a: Any) -> bool:
    """Whether augmentation settings change anything (image or audio settings)."""
    if isinstance(a, SpecAugmentConfig):
        return a.active
    return bool(a.shift or a.flip or a.noise or a.crop < 1 or a.brightness or a.contrast)


class Augmenter:
    """Applies each image (or audio) input's ``augment`` settings to a training batch."""

    def __init__(self, settings: dict[str, Any], seed: int) -> None:
        self.settings = {k: a for k, a in settings.items() if is_active(a)}
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
            if a.crop < 1:  # drawn only when set: older configs keep their draws
                x = resized_crop(x, a.crop, g)
            if a.shift:
                x = shift(x, a.shift, g)
            if a.flip:
                x = flip(x, g)
            if a.brightness or a.contrast:
                x = brightness_contrast(x, a.brightness, a.contrast, g)
            if a.noise:
                x = noise(x, a.noise, g)
            out[name] = x
        return out
