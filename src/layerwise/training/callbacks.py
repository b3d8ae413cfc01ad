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
import warnings
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
    """The epoch's losses, validation metrics and learning rate on one line: counts as
    integers (``val_tokens 41800``), other numbers to 4 significant digits."""
    import numbers  # numpy scalars too (np.int64 is no int)

    keys = [k for k in logs if k.startswith(("train_loss", "val_")) or k == "lr"]
    parts = []
    for k in keys:
        v = logs[k]
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            continue
        x = float(v)
        if isinstance(v, numbers.Integral):
            parts.append(f"{k} {int(v)}")
        elif x.is_integer() and abs(x) < 2**53:  # a count kept as a float
            parts.append(f"{k} {int(x)}")  # .4g would write 41800.0 as 4.18e+04
        else:
            parts.append(f"{k} {x:.4g}")
    return "  ".join(parts)


# -- the Trainer's own callbacks ---------------------------------------------------------


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved for ``patience`` epochs; by default restore
    the best weights at the end (``restore_best``). Its counters live in the Trainer's
    state, the best weights in the checkpoint (``state_key``), so it resumes exactly."""

    state_key = "best_state"

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.best_state: dict[str, Any] | None = None
        self.model: Any = None

    def on_fit_start(self, trainer: Any, model: Any) -> None:
        self.model = model

    def mode(self) -> str:
        m = self.cfg.monitor
        if self.cfg.mode != "auto":
            return str(self.cfg.mode)
        # losses and errors fall; a character error rate (ctc outputs) and nats are errors
        return "min" if "loss" in m or "nats_per" in m or m.endswith(
            ("mae", "rmse", "error", "cer")) else "max"

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, Any]) -> None:
        from layerwise.errors import ConfigError

        es, st = self.cfg, trainer.state
        if es.monitor not in logs:
            raise ConfigError(f"train.early_stopping.monitor {es.monitor!r} is not a logged "
                              f"metric; available: {', '.join(k for k in logs if '/' not in k)}")
        value = float(logs[es.monitor])
        better = st.best is None or (value < st.best - es.min_delta if self.mode() == "min"
                                     else value > st.best + es.min_delta)
        if better:
            st.best, st.best_epoch, st.waited = value, st.epoch, 0
            if es.restore_best:
                self.best_state = {k: v.detach().clone()
                                   for k, v in self.model.state_dict().items()}
        else:
            st.waited += 1
            if st.waited >= es.patience:
                st.stopped_early = True
                trainer.should_stop = True

    def on_fit_end(self, trainer: Any, result: Any) -> None:
        if not result.interrupted and self.best_state is not None and self.cfg.restore_best:
            self.model.load_state_dict(self.best_state)

    def state_dict(self) -> Any:
        return None if self.best_state is None else \
            {k: v.detach().contiguous() for k, v in self.best_state.items()}

    def load_state_dict(self, state: Any) -> None:
        self.best_state = state


class GradTelemetry(Callback):
    """Per-layer gradient norms, sampled every ``telemetry_every`` steps and averaged per
    epoch into the history as ``grad_norm/<layer>`` (checkpointed as ``state_key``)."""

    state_key = "grad"

    def __init__(self, param_names: list[str]) -> None:
        import torch

        layer_of = [n.rsplit(".", 1)[0] if "." in n else n for n in param_names]
        self.names = list(dict.fromkeys(layer_of))           # backbone.body.0, ...
        self.index = torch.tensor([self.names.index(v) for v in layer_of])
        self.sum = torch.zeros(len(self.names))
        self.count = 0

    def record(self, norms: Any, tensors: int) -> None:
        """Add one step's per-tensor norms (skipped unless every tensor had a gradient)."""
        import torch

        if tensors != len(self.index):
            return
        sq = torch.zeros(len(self.names)).index_add_(0, self.index, norms.float().cpu() ** 2)
        self.sum += sq.sqrt()
        self.count += 1

    def epoch_logs(self) -> dict[str, float]:
        if not self.count:
            return {}
        mean = (self.sum / self.count).tolist()
        self.sum.zero_()
        self.count = 0
        return {f"grad_norm/{n}": v for n, v in zip(self.names, mean)}

    def state_dict(self) -> Any:
        return {"sum": self.sum.clone(), "count": self.count}

    def load_state_dict(self, state: Any) -> None:
        self.sum, self.count = state["sum"], state["count"]


class ActivationTelemetry(Callback):
    """The share of dead units per ReLU layer, logged per epoch as ``dead_relu/<layer>``.

    A unit (a feature of a linear layer, a channel of a convolution) is dead on a batch
    when its output is zero for every row and position. Forward hooks are attached only
    for the forward pass of a sampled step (``telemetry_every``, the steps whose gradient
    norms are kept) and detach themselves after it, so other steps run no extra code;
    the hooks only read outputs, so training results do not change.
    """

    state_key = "activations"

    def __init__(self, model: Any = None, every: int = 25) -> None:
        import torch

        relu = (torch.nn.ReLU, torch.nn.ReLU6)
        self.modules = [(n, m) for n, m in model.named_modules() if isinstance(m, relu)] \
            if model is not None else []
        self.every = every
        self.sum = [0.0] * len(self.modules)
        self.count = [0] * len(self.modules)
        self.handles: list[Any] = []

    def _arm(self, step: int) -> None:
        if not self.modules or step % self.every:
            return
        self._disarm()  # a hook a forward pass never reached (an unused layer)
        self.handles = [m.register_forward_hook(self._hook(i))
                        for i, (_, m) in enumerate(self.modules)]

    def _disarm(self) -> None:
        for h in self.handles:
            if h is not None:
                h.remove()
        self.handles = []

    def _hook(self, i: int) -> Any:
        def hook(module: Any, args: Any, out: Any) -> None:
            if not module.training:  # validation passes do not count
                return
            import torch

            with torch.no_grad():
                alive = out.detach().reshape(out.shape[0], out.shape[1], -1) > 0
                dead = (~alive.any(dim=2).any(dim=0)).float().mean()
            self.sum[i] += float(dead)
            self.count[i] += 1
            self.handles[i].remove()
            self.handles[i] = None
            if all(h is None for h in self.handles):
                self.handles = []
        return hook

    def on_fit_start(self, trainer: Any, model: Any) -> None:
        self._arm(trainer.state.step)

    def on_step_end(self, trainer: Any, step: int, loss: Any) -> None:
        self._arm(step)

    def on_fit_end(self, trainer: Any, result: Any) -> None:
        self._disarm()

    def epoch_logs(self) -> dict[str, float]:
        out = {f"dead_relu/{n}": s / c for (n, _), s, c in
               zip(self.modules, self.sum, self.count) if c}
        self.sum = [0.0] * len(self.modules)
        self.count = [0] * len(self.modules)
        return out

    def state_dict(self) -> Any:
        return {"sum": list(self.sum), "count": list(self.count)}

    def load_state_dict(self, state: Any) -> None:
        if state and len(state.get("sum", ())) == len(self.modules):
            self.sum, self.count = list(state["sum"]), list(state["count"])


class Checkpointing(Callback):
    """Writes the checkpoint every ``checkpoint_every`` steps, at epoch ends (the Trainer
    calls :meth:`Trainer.save_checkpoint`) and when SIGTERM asked to stop."""

    def on_step_end(self, trainer: Any, step: int, loss: Any) -> None:
        every = trainer.config.checkpoint_every
        if trainer.interrupt_requested or (every and step % every == 0):
            trainer.save_checkpoint()


class CoresBusyWarning(UserWarning):
    """A run on several threads slowed down several-fold after it started."""


class SlowdownWatch(Callback):
    """Warns once when an epoch's time per step grows to ``factor`` times the fastest
    epoch's so far in a run on more than one thread. On a shared machine several OpenMP
    threads collapse when other processes take the cores (a 10-25x slowdown measured,
    docs/benchmarks.md); the threads are chosen once, at the start, because they are part
    of the arithmetic, so the run cannot switch by itself: the warning says what to do."""

    def __init__(self, factor: float = 3.0) -> None:
        self.factor, self.last, self.warned = factor, (0.0, 0), False
        self.fastest: float | None = None

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, Any]) -> None:
        (t0, s0), now, step = self.last, float(logs.get("time", 0.0)), int(logs.get("step", 0))
        self.last = (now, step)
        threads = trainer.choices.threads if trainer.choices is not None else 1
        if step <= s0 or threads < 2:
            return
        per = (now - t0) / (step - s0)
        if self.fastest is not None and not self.warned and per > self.factor * self.fastest:
            self.warned = True
            warnings.warn(
                f"epoch {epoch + 1} took {per * 1e3:.1f} ms per step, "
                f"{per / self.fastest:.1f}x the fastest epoch's {self.fastest * 1e3:.1f} ms, "
                f"on {threads} threads: other processes are probably using the cores, "
                "where several threads slow down far more than one; the run keeps its "
                "threads (they are part of its arithmetic) - set train.threads: 1 to train "
                "at a steady pace on a busy machine", CoresBusyWarning, stacklevel=2)
        self.fastest = per if self.fastest is None else min(self.fastest, per)


class ModelHooks(Callback):
    """Lets a model take part in its own training: ``model.train_epoch_start(epoch)`` at
    each epoch start (resumes included, so what it changes is a function of the epoch:
    gradual unfreezing) and ``model.train_end()`` after an uninterrupted fit (merging LoRA
    adapters). Last in the list: the final checkpoint holds the model as trained."""

    def on_epoch_start(self, trainer: Any, epoch: int) -> None:
        hook = getattr(trainer.model, "train_epoch_start", None)
        if hook is not None:
            hook(epoch)

    def on_fit_end(self, trainer: Any, result: Any) -> None:
        hook = getattr(trainer.model, "train_end", None)
        if hook is not None and not result.interrupted:
            hook()


class SigtermFlag:
    """While active, SIGTERM sets ``trainer.interrupt_requested`` instead of killing the
    process: the loop checkpoints at the next step boundary and returns."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer
        self.previous: Any = None

    def __enter__(self) -> None:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.trainer.interrupt_requested = True

    def __exit__(self, *exc: Any) -> None:
        import signal

        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
