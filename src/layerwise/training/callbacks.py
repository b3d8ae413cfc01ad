"""Callbacks: documented no-op hooks that a subclass overrides.

    class PrintLR(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            print(epoch, logs["lr"])

    Trainer(cfg, callbacks=[PrintLR()]).fit(model, data)

Hooks run in this order: on_fit_start, (on_epoch_start, on_step_end × n, on_validation_end,
on_epoch_end) × epochs, on_fit_end. Setting ``trainer.should_stop = True`` ends training
after the current epoch.
"""

from __future__ import annotations

import sys
import time
from typing import Any


class Callback:
    """Base class; every hook does nothing."""

    def on_fit_start(self, trainer: Any, model: Any) -> None:
        """Before the first step (after a resume restored its state)."""

    def on_epoch_start(self, trainer: Any, epoch: int) -> None:
        """At the start of each epoch (0-based)."""

    def on_step_end(self, trainer: Any, step: int, loss: Any) -> None:
        """After each optimizer step, with that step's mean loss (a float)."""

    def on_validation_end(self, trainer: Any, epoch: int, metrics: dict[str, float]) -> None:
        """After validation, with the validation metrics (keys start with ``val_``)."""

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, Any]) -> None:
        """After each epoch, with the history row (loss, metrics, lr, gradient norms)."""

    def on_fit_end(self, trainer: Any, result: Any) -> None:
        """After training ends, also when stopped early or by SIGTERM."""


class ProgressBar(Callback):
    """A rich progress bar with loss and metrics (interactive terminals)."""

    def __init__(self) -> None:
        self.progress: Any = None

    def on_fit_start(self, trainer: Any, model: Any) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(),
                                 MofNCompleteColumn(), TimeRemainingColumn(),
                                 TextColumn("{task.fields[info]}"), transient=False)
        self.progress.start()
        self.task = self.progress.add_task("train", total=trainer.steps_per_epoch, epoch=0,
                                           info="")
        self.last = 0.0

    def on_epoch_start(self, trainer: Any, epoch: int) -> None:
        self.progress.reset(self.task, total=trainer.steps_per_epoch,
                            completed=trainer.state.batch // trainer.config.accumulate,
                            epoch=f"{epoch + 1}/{trainer.config.epochs}", info="")

    def on_step_end(self, trainer: Any, step: int, loss: Any) -> None:
        now = time.monotonic()
        self.progress.advance(self.task)
        if now - self.last > 0.2:
            self.progress.update(self.task, info=f"loss {float(loss):.4f}")
            self.last = now

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, Any]) -> None:
        self.progress.update(self.task, info=format_logs(logs))

    def on_fit_end(self, trainer: Any, result: Any) -> None:
        if self.progress is not None:
            self.progress.stop()


class LogLines(Callback):
    """One line per epoch on stderr (for logs and CI)."""

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, Any]) -> None:
        print(f"epoch {epoch + 1}/{trainer.config.epochs}  {format_logs(logs)}",
              file=sys.stderr, flush=True)


def format_logs(logs: dict[str, Any]) -> str:
    keys = [k for k in logs if k.startswith(("train_loss", "val_")) or k == "lr"]
    parts = []
    for k in keys:
        v = logs[k]
        if isinstance(v, float):
            parts.append(f"{k} {v:.4g}")
    return "  ".join(parts)
