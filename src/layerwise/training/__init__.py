"""Training: the Trainer, optimizers and schedules, callbacks, checkpoints, hardware choices."""

from layerwise.training.callbacks import Callback
from layerwise.training.trainer import FitResult, Trainer, TrainState

__all__ = ["Callback", "FitResult", "TrainState", "Trainer"]
