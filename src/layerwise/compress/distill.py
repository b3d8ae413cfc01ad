"""Distillation: a small student learns from a trained teacher's softened outputs.

The loss per class output (Hinton et al., 2015)::

    α · T² · KL(softmax(teacher / T) ‖ softmax(student / T)) + (1 − α) · task loss

T (temperature) softens both distributions so the student learns how the teacher ranks
the wrong classes too; T² keeps the soft term's gradients on the scale of the hard one.
:class:`DistillTrainer` is the Trainer with this loss in its training step (validation
keeps the task loss, so early stopping and checkpoints read as for any run). The student is
the teacher's config with its widths multiplied by ``width`` (:func:`student_config`), or
any config of the same inputs and outputs.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from layerwise.config import Config
from layerwise.errors import ConfigError
from layerwise.training import Trainer
from layerwise.training.trainer import Batch

WIDTH_FIELDS = {"mlp": ("hidden",), "cnn": ("blocks.filters", "dense"),
                "rnn": ("hidden", "embedding_dim", "dense"),
                "transformer": ("d_model",)}


class DistillTrainer(Trainer):
    """The Trainer with the distillation loss; ``teacher`` runs frozen, in eval mode."""

    def __init__(self, *args: Any, teacher: nn.Module, temperature: float = 4.0,
                 alpha: float = 0.7, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if temperature <= 0 or not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"distillation needs temperature > 0 and 0 <= alpha <= 1; got "
                              f"{temperature}, {alpha}")
        self.teacher = teacher.eval().requires_grad_(False)
        self.temperature, self.alpha = temperature, alpha

    def training_step(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        inputs, targets = batch
        outputs = model(inputs)
        hard = self.compute_loss(model, outputs, targets)
        with torch.no_grad():
            soft = self.teacher(inputs)
        return self.alpha * self.kd_loss(outputs, soft) + (1 - self.alpha) * hard

    def kd_loss(self, student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor]
                ) -> torch.Tensor:
        """The soft term summed over the class outputs ([B, classes] logits)."""
        t = self.temperature
        losses = [F.kl_div(F.log_softmax(student[k].float() / t, dim=-1),
                           F.log_softmax(teacher[k].float() / t, dim=-1),
                           reduction="batchmean", log_target=True) * t * t
                  for k in student if student[k].dim() == 2 and student[k].shape[1] > 1]
        if not losses:
            raise ConfigError("distillation needs a class output (logits [B, classes])")
        return torch.stack(losses).sum()


def _scaled(v: int, k: float) -> int:
    return max(1, int(math.floor(v * k + 0.5)))


def student_config(teacher: Config, width: float) -> Config:
    """The teacher's config with every width multiplied by ``width`` (0 < width ≤ 1)."""
    family = teacher.model.family
    if family not in WIDTH_FIELDS:
        raise ConfigError(f"a derived student supports the families "
                          f"{', '.join(sorted(WIDTH_FIELDS))}; give --student CONFIG for "
                          f"{family!r}")
    if not 0.0 < width <= 1.0:
        raise ConfigError(f"--width must be in (0, 1]; got {width}")
    m: Any = teacher.model.model_copy(deep=True)
    for name in WIDTH_FIELDS[family]:
        if name == "blocks.filters":
            for b in m.blocks:
                b.filters = _scaled(b.filters, width)
        elif name == "d_model":
            m.d_model = _scaled(m.d_model // m.heads, width) * m.heads  # whole heads
        elif isinstance(getattr(m, name), list):
            setattr(m, name, [_scaled(v, width) for v in getattr(m, name)])
        else:
            setattr(m, name, _scaled(getattr(m, name), width))
    return teacher.model_copy(update={"model": m})
