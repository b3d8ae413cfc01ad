"""Mixup and CutMix: each training batch blended with a shuffled copy of itself.

Mixup (Zhang et al. 2018) takes ``lam * x + (1 - lam) * x[perm]`` for every float input;
CutMix (Yun et al. 2019) pastes a box of ``x[perm]`` into each image, ``lam`` being the
share of the image left untouched. Either way the loss is blended with the same weight,
``lam * loss(out, y) + (1 - lam) * loss(out, y[perm])``, which for cross-entropy is the
loss against the blended label distribution. ``lam`` is drawn from Beta(alpha, alpha).

``train.mixup: {alpha: 0.2}`` turns it on (``cutmix_alpha`` for CutMix; with both, each
batch uses one of the two, half the time each; ``prob`` is the share of batches blended).
The draws come from a generator seeded by ``train.seed``, the step and the batch, so a
resumed run blends exactly as an uninterrupted one, and a run without it draws nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from layerwise.data.batching import first_len, take
from layerwise.errors import ConfigError
from layerwise.training.steps import PlainStep


@dataclass
class Blend:
    """One batch's draw: the weight of the batch itself, the partner rows, and the box
    (top, left, height, width) CutMix pastes; ``box`` is None for mixup."""

    lam: float
    perm: torch.Tensor
    box: tuple[int, int, int, int] | None = None


def draw(cfg: Any, n: int, size: tuple[int, int] | None, seed: int) -> Blend | None:
    """The blend of one batch of ``n`` rows (``size``: the images' height and width, for
    CutMix); None when this batch is left as it is (``prob`` < 1)."""
    rng = np.random.default_rng(seed)
    if cfg.prob < 1 and rng.random() >= cfg.prob:
        return None
    cut = cfg.cutmix_alpha > 0 and (cfg.alpha <= 0 or rng.random() < 0.5)
    lam = float(rng.beta(cfg.cutmix_alpha, cfg.cutmix_alpha) if cut else
                rng.beta(cfg.alpha, cfg.alpha))
    perm = torch.from_numpy(rng.permutation(n))
    if not cut:
        return Blend(lam, perm)
    if size is None:
        raise ConfigError("train.mixup.cutmix_alpha pastes boxes of images; these inputs "
                          "have no image (use train.mixup.alpha)")
    h, w = size
    ch, cw = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    top, left = max(cy - ch // 2, 0), max(cx - cw // 2, 0)
    bottom, right = min(cy + ch - ch // 2, h), min(cx + cw - cw // 2, w)
    box = (top, left, bottom - top, right - left)
    return Blend(1 - box[2] * box[3] / (h * w), perm, box)  # the box was clipped: exact lam


def blend(inputs: Any, b: Blend) -> Any:
    """The blended inputs (a tensor or a dict of tensors). CutMix pastes into the images
    only; other inputs of the row stay its own, as in CutMix's definition."""
    single = isinstance(inputs, torch.Tensor)
    x = {"": inputs} if single else dict(inputs)
    for k, v in x.items():
        other = v.index_select(0, b.perm)
        if b.box is None:
            x[k] = v * b.lam + other * (1 - b.lam)
        elif v.ndim == 4:
            top, left, hh, ww = b.box
            out = v.clone()
            out[:, :, top:top + hh, left:left + ww] = other[:, :, top:top + hh, left:left + ww]
            x[k] = out
    return x[""] if single else x


def check_inputs(inputs: Any) -> tuple[int, int] | None:
    """Every input must be float (pixels, numbers: token ids cannot be blended); returns
    the images' (height, width), or None without images."""
    x = {"": inputs} if isinstance(inputs, torch.Tensor) else inputs
    if not isinstance(x, dict):
        raise ConfigError("train.mixup needs a batch's inputs as a tensor or a dict of "
                          f"tensors; got a {type(inputs).__name__}")
    ints = [k or "the input" for k, v in x.items() if not v.is_floating_point()]
    if ints:
        raise ConfigError(f"train.mixup blends image and numeric inputs; {', '.join(ints)} "
                          "holds integers (token ids or category codes): drop train.mixup")
    sizes = {tuple(v.shape[-2:]) for v in x.values() if v.ndim == 4}
    if len(sizes) > 1:
        raise ConfigError(f"train.mixup.cutmix_alpha needs images of one size; got {sizes}")
    return sizes.pop() if sizes else None  # type: ignore[return-value]


class MixupStep(PlainStep):
    """Plain optimisation on blended batches, with the loss blended alike."""

    def loss(self, inputs: Any, targets: Any) -> torch.Tensor:
        t, cfg = self.trainer, self.trainer.config
        size = check_inputs(inputs)
        b = draw(cfg.mixup, first_len(targets), size, cfg.seed * 1_000_003
                 + t.state.step * 7919 + t.state.batch * 31 + 17)
        if b is None:
            return super().loss(inputs, targets)
        # inputs and targets share the batch's device (the Trainer moved both)
        first = inputs if isinstance(inputs, torch.Tensor) else next(iter(inputs.values()))
        b.perm = b.perm.to(first.device)
        model = t.forward_module
        out = model(blend(inputs, b))
        return b.lam * t.compute_loss(model, out, targets) + \
            (1 - b.lam) * t.compute_loss(model, out, take(targets, b.perm))
