"""What the generative families share: the data they model, class conditions, EMA weights.

A generative model is a whole model (no heads): it learns from its inputs alone and plugs
into the shared Trainer through the usual three methods::

    forward(inputs) -> {"loss": [B], ...}   per-row terms of the objective (and diagnostics)
    loss(outputs, targets) -> scalar        the mean of outputs["loss"]
    metrics(outputs, targets) -> dict       the mean of every per-row term

Per-row terms concatenate across validation batches like any other output, and an
autoencoder's per-row reconstruction error is its anomaly score. A model trained in phases
(a GAN: discriminator, then generator) also defines ``phases``, ``phase_parameters(phase)``
and ``phase_loss(phase, inputs)``; the Trainer then keeps one optimizer and schedule per
phase (see training/trainer.py). ``on_step_end()`` runs after every optimizer step (EMA).

The data a model generates is either one image input (``[B, C, H, W]``, normalised by the
image encoder; ``to_pixels`` maps back to [0, 1]) or the numeric block of the tabular
inputs (``[B, k]``, standardised). A category input named by ``condition`` is the class:
its encoded indices are 1..classes-1 (index 0 is the category encoder's "<unknown>", which a
model may use as its null class, e.g. for classifier-free guidance); class embeddings are
sized ``spec.classes`` (unknown included) and ``spec.class_ids`` lists the real classes.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import torch
from torch import nn

from layerwise.errors import ConfigError


class DataSpec(nn.Module):
    """Which input a generative model reads and how to turn it back into pixels."""

    def __init__(self, cfg: Any, desc: dict[str, Any]) -> None:
        super().__init__()
        images = desc.get("images", {})
        names = list(desc.get("category_names", []))
        anomaly = getattr(cfg, "anomaly", None)
        roles = {cfg.condition, cfg.quality_label, anomaly.label if anomaly else None} - {None}
        others = [n for n in names if n not in roles]
        if others:
            raise ConfigError(f"model family {cfg.family} models image or numeric inputs; "
                              f"category inputs {others} have no role (use model.condition)")
        if len(images) > 1 or (images and desc.get("numeric_dim", 0)):
            raise ConfigError(f"model family {cfg.family} models one image input or the "
                              "numeric inputs, not both")
        self.image = next(iter(images), None)
        if self.image is not None:
            self.shape: tuple[int, ...] = tuple(images[self.image])
            stats = desc.get("image_stats", {}).get(self.image, {})
            c = self.shape[0]
            mean = torch.tensor(stats.get("mean") or [0.0] * c).view(1, c, 1, 1)
            std = torch.tensor(stats.get("std") or [1.0] * c).view(1, c, 1, 1)
        else:
            self.shape = (int(desc.get("numeric_dim", 0)),)
            if not self.shape[0]:
                raise ConfigError(f"model family {cfg.family} needs an image or numeric input")
            mean, std = torch.zeros(1), torch.ones(1)
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.condition_index = names.index(cfg.condition) if cfg.condition else None
        sizes = desc.get("category_sizes", [])
        self.classes = sizes[self.condition_index] if self.condition_index is not None else 0
        self.anomaly_index = names.index(anomaly.label) if anomaly else None

    @property
    def class_ids(self) -> list[int]:
        """The encoded indices of the real classes (0 is the encoder's unknown value)."""
        return list(range(1, self.classes))

    @property
    def is_image(self) -> bool:
        return self.image is not None

    def data(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return inputs[self.image] if self.image is not None else inputs["numeric"]

    def labels(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor | None:
        if self.condition_index is None:
            return None
        return inputs["category"][:, self.condition_index]

    def to_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images → pixel values in [0, 1] (tabular data is returned as is)."""
        if self.image is None:
            return x
        return (x * self.std + self.mean).clamp(0.0, 1.0)

    def from_pixels(self, x: torch.Tensor) -> torch.Tensor:
        if self.image is None:
            return x
        return (x - self.mean) / self.std


class GenerativeModel(nn.Module):
    """The base of the generative families (see the module docstring)."""

    config_class: ClassVar[type[Any]]  # the family's config (config/generative.py)
    generative: ClassVar[bool]
    phases: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # inference asks a model whether it is generative: the answer is what its config
        # declares (one source, config/), not a flag of its own
        cls.generative = cls.config_class.generative

    def __init__(self, cfg: Any, desc: dict[str, Any]) -> None:
        super().__init__()
        self.cfg = cfg
        self.spec = DataSpec(cfg, desc)

    def loss(self, outputs: dict[str, torch.Tensor],
             targets: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        return outputs["loss"].mean()

    def metrics(self, outputs: dict[str, torch.Tensor],
                targets: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
        return {k: float(v.detach().float().mean()) for k, v in outputs.items()
                if k != "loss" and v.dim() == 1}

    def on_step_end(self) -> None:
        """Called by the Trainer after every optimizer step."""

    def sample(self, n: int, *, labels: torch.Tensor | None = None, steps: int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` new rows in data units: images ``[n, C, H, W]`` in [0, 1], or ``[n, k]``."""
        raise NotImplementedError(f"model family {self.cfg.family} does not generate samples")

    def check_labels(self, n: int, labels: torch.Tensor | int | None) -> torch.Tensor | None:
        """Class labels for ``n`` samples: None, one class for all, or one per sample."""
        if labels is None:
            return None
        if not self.spec.classes:
            raise ConfigError(f"this {self.cfg.family} model is not class-conditional "
                              "(model.condition is unset)")
        t = torch.as_tensor(labels, dtype=torch.long)
        t = t.expand(n).clone() if t.dim() == 0 else t
        if t.shape != (n,) or int(t.min()) < 1 or int(t.max()) >= self.spec.classes:
            raise ConfigError(f"class labels must be {n} encoded class indices in [1, "
                              f"{self.spec.classes - 1}] (0 is the unknown value)")
        return t


class EMA(nn.Module):
    """An exponential moving average of a module's weights, kept as buffers of its own
    (so it is checkpointed and saved with the model)."""

    def __init__(self, module: nn.Module, decay: float) -> None:
        super().__init__()
        self.decay = decay
        self.shadow = copy.deepcopy(module)
        self.shadow.requires_grad_(False)
        for p in list(self.shadow.parameters()):
            p.requires_grad_(False)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        # the usual warm-up: early on the average follows the weights more closely
        self.updates += 1
        d = min(self.decay, (1.0 + float(self.updates)) / (10.0 + float(self.updates)))
        src = list(module.parameters())
        dst = list(self.shadow.parameters())
        torch._foreach_lerp_(dst, src, 1.0 - d)
        for b_dst, b_src in zip(self.shadow.buffers(), module.buffers()):
            b_dst.copy_(b_src)
