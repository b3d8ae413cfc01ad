"""Adversarial examples (FGSM, PGD) and the adversarial-training step strategy.

An attack moves each float input (image pixels, numeric columns) within an L-infinity ball
of radius ``eps`` in the direction that raises the loss: FGSM takes one step of size eps
(Goodfellow et al. 2015), PGD ``steps`` steps of size ``alpha`` from a random start,
projected back onto the ball after each (Madry et al. 2018). Integer inputs (token ids,
category codes) are left alone.

``eps`` is in raw input units: the encoders standardise pixels and numbers, so a
:class:`Box` per input carries what one raw unit is in model units (``scale``: 1/std per
channel) and the valid range (pixels in [0, 1]). Without boxes eps is in model units and
nothing is clamped (the imperative rung: ``Trainer(cfg).fit(module, data)``).

:class:`AdversarialStep` is :class:`~layerwise.training.steps.PlainStep` on the attacked
batch (``train.adversarial: {method: pgd, eps: 0.1, steps: 7}``); the plain path is not
touched.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from layerwise.errors import ConfigError
from layerwise.training.steps import Outcome, PlainStep

LossFn = Callable[[Any], torch.Tensor]  # perturbed inputs → a scalar loss


@dataclass
class Box:
    """One input's raw unit in model units (``scale``) and valid range (``low``/``high``,
    None: unbounded); each broadcasts against the input tensor."""

    scale: torch.Tensor | float = 1.0
    low: torch.Tensor | None = None
    high: torch.Tensor | None = None


def attack(loss_fn: LossFn, inputs: Any, *, eps: float, method: str = "pgd", steps: int = 10,
           alpha: float | None = None, boxes: dict[str, Box] | None = None,
           generator: torch.Generator | None = None,
           autocast: Callable[[], AbstractContextManager[Any]] = nullcontext) -> Any:
    """The adversarial version of ``inputs`` (a tensor or a dict of tensors) that raises
    ``loss_fn``; gradients reach the inputs only (the model's ``.grad`` is not touched)."""
    if method not in ("fgsm", "pgd"):
        raise ConfigError(f"attack method must be fgsm or pgd; got {method!r}")
    if eps <= 0:
        raise ConfigError(f"attack eps must be positive; got {eps}")
    single = isinstance(inputs, torch.Tensor)
    x = {"": inputs} if single else dict(inputs)
    keys = [k for k, v in x.items() if isinstance(v, torch.Tensor) and v.is_floating_point()]
    if not keys:
        raise ConfigError("adversarial examples need image or numeric inputs; these inputs "
                          f"are all integer ({', '.join(x) or 'none'})")
    boxes = boxes or {}
    box = {k: boxes.get(k, Box()) for k in keys}
    n_steps, size = (1, eps) if method == "fgsm" else (steps, alpha or 2.5 * eps / steps)
    delta = {k: _start(x[k], eps * _t(box[k].scale, x[k]), method, generator) for k in keys}
    for _ in range(n_steps):
        for d in delta.values():
            d.requires_grad_(True)
        with autocast():
            moved = _apply(x, delta, box)
            loss = loss_fn(moved[""] if single else moved)
        grads = torch.autograd.grad(loss, [delta[k] for k in keys])
        with torch.no_grad():
            for k, g in zip(keys, grads):
                radius = eps * _t(box[k].scale, x[k])
                step = delta[k] + size * _t(box[k].scale, x[k]) * g.sign()
                delta[k] = torch.maximum(torch.minimum(step, radius), -radius)
    with torch.no_grad():
        out = _apply(x, {k: d.detach() for k, d in delta.items()}, box)
    return out[""] if single else out


def _t(v: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(v, dtype=like.dtype, device=like.device)


def _start(x: torch.Tensor, radius: torch.Tensor, method: str,
           generator: torch.Generator | None) -> torch.Tensor:
    """PGD starts at a uniform point of the ball, FGSM at the input itself."""
    if method == "fgsm":
        return torch.zeros_like(x)
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device="cpu").to(x.device)
    return (u * 2 - 1) * radius


def _apply(x: dict[str, Any], delta: dict[str, torch.Tensor], box: dict[str, Box]
           ) -> dict[str, Any]:
    """Inputs plus their perturbations, clamped to each input's valid range."""
    out = dict(x)
    for k, d in delta.items():
        v = x[k] + d
        b = box[k]
        if b.low is not None and b.high is not None:
            v = torch.maximum(torch.minimum(v, _t(b.high, v)), _t(b.low, v))
        out[k] = v
    return out


class AdversarialStep(PlainStep):
    """Plain optimisation on adversarial examples made against the current weights.

    The attack runs the model as training does (train mode, the same autocast); its
    RNG is a generator seeded from ``train.seed`` and the step count, so a resumed run
    draws the same starts as an uninterrupted one.
    """

    def __init__(self, trainer: Any, model: torch.nn.Module, opt: torch.optim.Optimizer,
                 sched: Any, n_batches: int, boxes: dict[str, Box] | None = None) -> None:
        super().__init__(trainer, model, opt, sched, n_batches)
        self.boxes = boxes or {}

    def __call__(self, inputs: Any, targets: Any,
                 autocast: Callable[[], AbstractContextManager[Any]]) -> Outcome | None:
        t, adv = self.trainer, self.trainer.config.adversarial
        g = torch.Generator().manual_seed(t.config.seed * 1_000_003 + t.state.step * 7919
                                          + t.state.batch)

        def loss_fn(x: Any) -> torch.Tensor:
            return t.training_step(t.forward_module, (x, targets))

        attacked = attack(loss_fn, inputs, eps=adv.eps, method=adv.method, steps=adv.steps,
                          alpha=adv.alpha, boxes=self.boxes, generator=g, autocast=autocast)
        return super().__call__(attacked, targets, autocast)


def boxes_for(schema: Any) -> dict[str, Box]:
    """Each image input's raw unit and range in model units (pixels in [0, 1] become
    ``(p - mean) / std``); numeric columns are standardised already: eps is in std units."""
    boxes: dict[str, Box] = {}
    for e in getattr(schema, "images", []):
        mean = torch.tensor(e.mean).view(1, -1, 1, 1)
        std = torch.tensor(e.std).view(1, -1, 1, 1)
        boxes[e.name] = Box(scale=1.0 / std, low=(0.0 - mean) / std, high=(1.0 - mean) / std)
    return boxes
