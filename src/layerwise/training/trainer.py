"""The Trainer: a loop you can read in one sitting, exact and fast by default.

    >>> import torch
    >>> from layerwise import Trainer, TrainConfig
    >>> x, y = torch.randn(256, 4), torch.randint(0, 2, (256,))
    >>> model = torch.nn.Linear(4, 2)
    >>> result = Trainer(TrainConfig(epochs=2, progress="quiet"),
    ...                  loss_fn=torch.nn.functional.cross_entropy).fit(model, (x, y))
    >>> result.epochs
    2

*What* to compute lives in the model (``model.loss`` / ``model.metrics`` when present) or
in ``loss_fn`` / ``metrics_fn``; *how* is the Trainer's job: batching, precision, the
numerics guard, checkpoints, telemetry, early stopping. Override :meth:`training_step`
or :meth:`validation_step` for custom objectives.

Exactness: the data order of an epoch is a function of (seed, epoch); checkpoints hold the
model, optimizer, scheduler, every RNG state, the batch position and the step, so a run
killed at any point and resumed ends with the same weights as one never interrupted.
"""

from __future__ import annotations

import math
import signal
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from layerwise.config import TrainConfig
from layerwise.data.augment import Augmenter
from layerwise.data.batching import InMemoryBatches, TensorData, Tree, make_batches, nbytes
from layerwise.errors import CheckpointError, ConfigError, NonFiniteError
from layerwise.training import checkpoint as ckpt
from layerwise.training.callbacks import Callback, LogLines, ProgressBar
from layerwise.training.hardware import (
    SMALL_MODEL_FLOPS,
    Choices,
    choose,
    compiled,
    forward_flops,
    grad_scaler,
    idle_cores,
    threads_for,
)
from layerwise.training.optim import build_optimizer, build_scheduler
from layerwise.training.phases import Phases
from layerwise.training.probe import choose_precision
from layerwise.training.trees import as_data, batch_len, cat, contiguous, to_device

Batch = tuple[Tree, Tree]


@dataclass
class TrainState:
    """Where the loop is; saved in every checkpoint."""

    epoch: int = 0          # current epoch (0-based)
    batch: int = 0          # batches done in the current epoch
    step: int = 0           # optimizer steps done (skipped steps included)
    skipped: int = 0        # steps skipped for a non-finite loss or gradient
    bad_in_row: int = 0
    samples: int = 0
    train_time: float = 0.0
    best: float | None = None
    best_epoch: int = -1
    waited: int = 0         # epochs without improvement (early stopping)
    stopped_early: bool = False
    epoch_loss: float = 0.0  # running sum of step losses in the current epoch
    epoch_loss_n: int = 0
    phase_sums: dict[str, float] = field(default_factory=dict)  # phased models' epoch logs


@dataclass
class FitResult:
    history: list[dict[str, Any]]
    choices: dict[str, Any]
    state: TrainState
    interrupted: bool = False
    best: dict[str, Any] = field(default_factory=dict)

    @property
    def epochs(self) -> int:
        return len(self.history)

    @property
    def samples_per_second(self) -> float:
        return self.state.samples / self.state.train_time if self.state.train_time else 0.0


class Trainer:
    """Train any ``nn.Module``; see the module docstring for an example."""

    def __init__(self, config: TrainConfig | None = None, *,
                 loss_fn: Callable[[Any, Any], torch.Tensor] | None = None,
                 metrics_fn: Callable[[Any, Any], dict[str, float]] | None = None,
                 callbacks: Sequence[Callback] = (),
                 checkpoint_dir: str | Path | None = None,
                 resume: bool = False,
                 augment: Augmenter | None = None) -> None:
        self.config = config or TrainConfig()
        self.loss_fn = loss_fn
        self.metrics_fn = metrics_fn
        self.callbacks = list(callbacks)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.resume = resume
        self.augment = augment
        self.state = TrainState()
        self.history: list[dict[str, Any]] = []
        self.should_stop = False
        self.steps_per_epoch = 0
        self.choices: Choices | None = None   # set by fit: device, precision, threads, ...
        self._sigterm = False

    # -- the parts a subclass may override ------------------------------------------------
    def compute_loss(self, model: nn.Module, outputs: Any, targets: Any) -> torch.Tensor:
        if self.loss_fn is not None:
            return self.loss_fn(outputs, targets)
        if hasattr(model, "loss"):
            return model.loss(outputs, targets)
        raise ConfigError("the model has no loss(outputs, targets) method; pass loss_fn= to "
                          "Trainer")

    def training_step(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """Forward pass and loss for one training batch."""
        inputs, targets = batch
        return self.compute_loss(model, model(inputs), targets)

    def validation_step(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, Any]:
        """Loss and outputs for one validation batch (under inference mode)."""
        inputs, targets = batch
        outputs = model(inputs)
        return self.compute_loss(model, outputs, targets), outputs

    def metrics(self, model: nn.Module, outputs: Any, targets: Any) -> dict[str, float]:
        if self.metrics_fn is not None:
            return self.metrics_fn(outputs, targets)
        if hasattr(model, "metrics"):
            return model.metrics(outputs, targets)
        return {}

    # -- fit -------------------------------------------------------------------------------
    def fit(self, model: nn.Module, train: Any, validation: Any = None) -> FitResult:
        cfg = self.config
        train_data = as_data(train)
        val_data = as_data(validation) if validation is not None else None
        size = nbytes(train_data.inputs) + nbytes(train_data.targets) \
            if isinstance(train_data, TensorData) else 0
        saved = self._load_checkpoint() if self.resume else None
        # a resumed run keeps the first run's choices: threads and precision change the
        # arithmetic, and the resumed weights must equal an uninterrupted run's
        kept = saved.get("choices") if saved else None
        self.choices = choices = Choices.from_dict(kept) if kept else choose(cfg, model, size)
        if kept and cfg.threads:  # threads may be changed on resume, by the user only
            choices.threads, choices.reasons["threads"] = cfg.threads, "set in config"
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        device = torch.device(choices.device)
        channels_last = choices.memory_format == "channels_last"
        model.to(device)
        if channels_last:
            model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        batches = self._batches(train_data, choices, shuffle=True, device=device)
        val_batches = self._batches(val_data, choices, shuffle=False, device=device,
                                    batch_size=cfg.batch_size * 4) if val_data else None
        self.steps_per_epoch = math.ceil(len(batches) / cfg.accumulate)
        total_steps = self.steps_per_epoch * cfg.epochs
        params = [p for p in model.parameters() if p.requires_grad]
        self._phases: Phases | None = None
        if getattr(model, "phases", ()):  # e.g. a GAN: one optimizer per phase
            self._phases = Phases(model, cfg, total_steps, self.steps_per_epoch)
            opt, sched = self._phases.optimizer, self._phases.scheduler  # type: ignore[assignment]
        else:
            if cfg.optimizers:
                raise ConfigError("train.optimizers is for models trained in phases (gan); "
                                  "use train.optimizer")
            opt = build_optimizer(params, cfg.optimizer)
            sched = build_scheduler(opt, cfg.schedule, total_steps, self.steps_per_epoch)
        if not kept:  # after the config checks above: they must fail first, and fast
            self._probe(model, batches, channels_last, device)
        torch.set_num_threads(choices.threads)
        self._scaler = grad_scaler(choices, device)
        self._forward = compiled(model, cfg.compile, device, total_steps, choices)
        self._on_step_end = getattr(model, "on_step_end", None)
        if self.augment is None:
            self.augment = Augmenter({}, cfg.seed)
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        self._layer_of = _layers(names)
        self._grad_sum = torch.zeros(len(set(self._layer_of)))
        self._grad_count = 0
        self._best_state: dict[str, torch.Tensor] | None = None
        self.history = []
        self.state = TrainState()
        if saved is not None:
            self._restore(model, opt, sched, saved)
        callbacks = self.callbacks + self._progress_callbacks()
        for cb in callbacks:
            cb.on_fit_start(self, model)
        interrupted = False
        with _sigterm_flag(self):
            while self.state.epoch < cfg.epochs and not self.should_stop:
                interrupted = self._run_epoch(model, batches, val_batches, opt, sched,
                                              params, callbacks, channels_last, device)
                if interrupted:
                    break
        if not interrupted and self._best_state is not None and cfg.early_stopping \
                and cfg.early_stopping.restore_best:
            model.load_state_dict(self._best_state)
        result = FitResult(self.history, choices.as_dict(), self.state, interrupted,
                           {"epoch": self.state.best_epoch + 1, "value": self.state.best})
        for cb in callbacks:
            cb.on_fit_end(self, result)
        return result

    def _probe(self, model: nn.Module, batches: InMemoryBatches, channels_last: bool,
               device: torch.device) -> None:
        """Settle threads and precision on the model's first batch (new runs only)."""
        cfg, c = self.config, self._c
        batch = to_device(next(iter(batches.epoch(0))), device, channels_last)
        cpu = device.type == "cpu"
        timed = cfg.precision == "auto" and c.precision == "bf16" and cpu
        flops = forward_flops(model, lambda: model(batch[0])) \
            if cpu and (cfg.threads is None or timed) else math.inf
        if cfg.threads is None and cpu:
            free = idle_cores() if flops >= SMALL_MODEL_FLOPS and c.threads > 1 else None
            c.threads, c.reasons["threads"] = threads_for(flops, c.threads, free)
            c.probe["idle_cores"] = None if free is None else round(free, 2)
        torch.set_num_threads(c.threads)
        if timed and flops < SMALL_MODEL_FLOPS:
            c.precision = "fp32"
            c.reasons["precision"] = (f"small model ({flops / 1e6:.2g} MFLOP per forward "
                                      "batch): bf16 casts cost more than they save")
        elif timed:
            c.precision, c.reasons["precision"], c.probe["precision"] = choose_precision(
                model, lambda m: self.training_step(m, batch), batch, device, c.threads)
        if c.precision == "fp16" and getattr(model, "phases", ()):
            c.precision = "fp32"
            c.reasons["precision"] = ("fp16 needs a gradient scaler, which phased training "
                                      "does not run: fp32")
        self._check_precision(model, batch, device)

    @property
    def _c(self) -> Choices:
        if self.choices is None:
            raise RuntimeError("the Trainer's choices are made by fit()")
        return self.choices

    def _batches(self, data: Any, choices: Choices, *, shuffle: bool, device: torch.device,
                 batch_size: int | None = None) -> InMemoryBatches:
        if isinstance(data, InMemoryBatches):
            return data
        bs = batch_size or self.config.batch_size
        if isinstance(data, TensorData) and choices.batching == "memory":
            data = TensorData(to_device(data.inputs, device, False),
                              to_device(data.targets, device, False))
        if not isinstance(data, TensorData):
            from layerwise.data.batching import LoaderBatches

            return LoaderBatches(data, bs, shuffle=shuffle, seed=self.config.seed,
                                 pin_memory=device.type == "cuda")
        if choices.batching == "loader" and device.type == "cuda":
            from layerwise.data.batching import LoaderBatches

            return LoaderBatches(data, bs, shuffle=shuffle, seed=self.config.seed,
                                 pin_memory=True)
        return make_batches(data, bs, kind=choices.batching, shuffle=shuffle,
                            seed=self.config.seed)

    def _progress_callbacks(self) -> list[Callback]:
        mode = self.config.progress
        if mode == "auto":
            import sys

            mode = "bar" if sys.stderr.isatty() else "log"
        return {"bar": [ProgressBar()], "log": [LogLines()]}.get(mode, [])

    def _check_precision(self, model: nn.Module, batch: Batch, device: torch.device) -> None:
        """Keep a reduced precision only if one batch's loss agrees with fp32."""
        c = self._c
        if c.precision == "fp32" or self.config.precision != "auto":
            return
        dtype = c.autocast_dtype
        with torch.random.fork_rng(devices=[]):
            was = model.training
            model.eval()
            with torch.no_grad():
                ref = float(self.training_step(model, batch))
                with torch.autocast(device.type, dtype=dtype):
                    low = float(self.training_step(model, batch))
            model.train(was)
        if not math.isfinite(low) or abs(low - ref) > 0.05 * max(1e-3, abs(ref)):
            c.reasons["precision"] = (f"{c.precision} loss {low:.4g} differs from fp32 "
                                      f"{ref:.4g} on the first batch: kept fp32")
            c.precision = "fp32"

    def _run_epoch(self, model: nn.Module, batches: InMemoryBatches,
                   val_batches: InMemoryBatches | None, opt: torch.optim.Optimizer,
                   sched: Any, params: list[nn.Parameter], callbacks: list[Callback],
                   channels_last: bool, device: torch.device) -> bool:
        cfg, st = self.config, self.state
        for cb in callbacks:
            cb.on_epoch_start(self, st.epoch)
        model.train()
        acc = cfg.accumulate
        n_batches = len(batches)
        dtype = self._c.autocast_dtype
        autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else nullcontext
        schedule = cfg.schedule
        sched_active = schedule.name != "constant" or schedule.warmup_steps > 0
        loss_sum, loss_n = st.epoch_loss, st.epoch_loss_n
        step_loss: torch.Tensor | None = None
        t0 = time.perf_counter()
        for inputs, targets in batches.epoch(st.epoch, start=st.batch):
            inputs = to_device(inputs, device, channels_last)
            targets = to_device(targets, device, False)
            if self.augment:
                inputs = self.augment(inputs)
            if self._phases is not None:
                st.batch += 1
                st.samples += batch_len(targets, inputs)
                with autocast():
                    phased = self._phases.step(model, inputs, st, sched_active)
                if phased is not None:
                    loss_sum += phased
                    loss_n += 1
                    st.epoch_loss_n = loss_n
                    if self._on_step_end is not None:
                        self._on_step_end()
                t0 = self._end_step(model, opt, sched, callbacks, phased, loss_sum, loss_n, t0)
                if self._sigterm:
                    return True
                continue
            with autocast():
                loss = self.training_step(self._forward, (inputs, targets))
            scaled = loss / acc if acc > 1 else loss
            (self._scaler.scale(scaled) if self._scaler else scaled).backward()
            step_loss = loss.detach() if step_loss is None else step_loss + loss.detach()
            st.batch += 1
            st.samples += batch_len(targets, inputs)
            if st.batch % acc and st.batch != n_batches:
                continue
            loss_value, finite = self._optimizer_step(opt, sched, params, step_loss,
                                                      (st.batch - 1) % acc + 1, sched_active)
            step_loss = None
            if finite:
                loss_sum += loss_value
                loss_n += 1
            t0 = self._end_step(model, opt, sched, callbacks, loss_value, loss_sum, loss_n, t0)
            if self._sigterm:
                return True
        st.train_time += time.perf_counter() - t0
        logs: dict[str, Any] = {"epoch": st.epoch + 1, "step": st.step,
                                "train_loss": loss_sum / max(1, loss_n),
                                "lr": opt.param_groups[0]["lr"], "skipped_steps": st.skipped,
                                "time": round(st.train_time, 3)}
        if val_batches is not None:
            val = self.evaluate(model, val_batches, channels_last, device)
            logs.update(val)
            for cb in callbacks:
                cb.on_validation_end(self, st.epoch, val)
        if self._phases is not None:
            logs.update(self._phases.epoch_logs(st))
        logs.update(self._grad_norm_logs())
        self.history.append(logs)
        self._early_stopping(model, logs)
        for cb in callbacks:
            cb.on_epoch_end(self, st.epoch, logs)
        st.epoch += 1
        st.batch = 0
        st.epoch_loss, st.epoch_loss_n = 0.0, 0
        st.phase_sums = {}
        self._save(model, opt, sched)
        return False

    def _optimizer_step(self, opt: torch.optim.Optimizer, sched: Any,
                        params: list[nn.Parameter], step_loss: torch.Tensor, micro: int,
                        sched_active: bool) -> tuple[float, bool]:
        """One optimizer step: guard, telemetry, clip, update, with one host sync.

        Returns the step's mean loss and whether the step was taken: a step whose loss or
        gradient is not finite is skipped and counted (the schedule still steps, to stay
        aligned with the step count).
        """
        cfg, st, scaler = self.config, self.state, self._scaler
        if scaler is not None:
            scaler.unscale_(opt)
        grads = [p.grad for p in params if p.grad is not None]
        norms = torch._foreach_norm(grads) if grads else [torch.zeros(())]
        stacked = torch.stack(norms)
        total = torch.linalg.vector_norm(stacked)
        norm_value, loss_value = torch.stack([total, step_loss.float()]).tolist()
        loss_value /= micro
        finite = math.isfinite(norm_value) and math.isfinite(loss_value)
        if finite:
            st.bad_in_row = 0
            if st.step % cfg.telemetry_every == 0 and len(norms) == len(self._layer_of):
                self._record_grad_norms(stacked)
            if cfg.grad_clip is not None and norm_value > cfg.grad_clip:
                torch._foreach_mul_(grads, cfg.grad_clip / (norm_value + 1e-6))
            opt.step() if scaler is None else scaler.step(opt)
            if self._on_step_end is not None:
                self._on_step_end()
        else:
            st.skipped += 1
            # an fp16 gradient overflow is the scaler's business (it lowers the scale);
            # only a non-finite loss, or any non-finite step in fp32/bf16, counts here
            if scaler is None or not math.isfinite(loss_value):
                st.bad_in_row += 1
            if st.bad_in_row >= cfg.max_nonfinite_steps:
                raise NonFiniteError(
                    f"{st.bad_in_row} optimizer steps in a row had a non-finite loss or "
                    f"gradient (last loss {loss_value}); lower train.optimizer.lr, "
                    "set train.grad_clip, or check the inputs for NaN")
        if scaler is not None:
            scaler.update()
        if sched_active:
            with warnings.catch_warnings():
                # torch warns when a schedule steps before the first update; it must
                # step anyway to stay aligned with the step count
                warnings.simplefilter("ignore", UserWarning)
                sched.step()
        opt.zero_grad(set_to_none=True)
        return loss_value, finite

    def _end_step(self, model: nn.Module, opt: Any, sched: Any, callbacks: list[Callback],
                  loss_value: float | None, loss_sum: float, loss_n: int, t0: float) -> float:
        """Count the step, run the callbacks, checkpoint when due; returns the clock start."""
        st, cfg = self.state, self.config
        st.step += 1
        for cb in callbacks:
            cb.on_step_end(self, st.step, loss_value if loss_value is not None else math.nan)
        if self._sigterm or (cfg.checkpoint_every and st.step % cfg.checkpoint_every == 0):
            st.train_time += time.perf_counter() - t0
            st.epoch_loss, st.epoch_loss_n = loss_sum, loss_n
            self._save(model, opt, sched)
            return time.perf_counter()
        return t0

    @torch.inference_mode()
    def evaluate(self, model: nn.Module, batches: InMemoryBatches, channels_last: bool = False,
                 device: torch.device | None = None) -> dict[str, float]:
        """Validation loss and metrics over all batches (keys prefixed ``val_``)."""
        device = device or next(model.parameters()).device
        was = model.training
        model.eval()
        dtype = self.choices.autocast_dtype if self.choices is not None else None
        outs, tgts, total, n = [], [], 0.0, 0
        for inputs, targets in batches.epoch(0):
            inputs = to_device(inputs, device, channels_last)
            targets = to_device(targets, device, False)
            with torch.autocast(device.type, dtype=dtype or torch.float32,
                                enabled=dtype is not None):
                loss, out = self.validation_step(model, (inputs, targets))
            b = batch_len(targets, inputs)
            total += float(loss) * b
            n += b
            if hasattr(model, "compact"):  # e.g. language models: per-row sums, not logits
                out = model.compact(out, targets)
            outs.append(to_device(out, torch.device("cpu"), False))
            tgts.append(to_device(targets, torch.device("cpu"), False))
        model.train(was)
        metrics = self.metrics(model, cat(outs), cat(tgts)) if outs else {}
        return {"val_loss": total / max(1, n), **{f"val_{k}": v for k, v in metrics.items()}}

    # -- telemetry --------------------------------------------------------------------------
    def _record_grad_norms(self, norms: torch.Tensor) -> None:
        idx = torch.tensor(self._layer_index)
        sq = torch.zeros(len(self._layer_names)).index_add_(0, idx, norms.float().cpu() ** 2)
        self._grad_sum += sq.sqrt()
        self._grad_count += 1

    def _grad_norm_logs(self) -> dict[str, float]:
        if not self._grad_count:
            return {}
        mean = (self._grad_sum / self._grad_count).tolist()
        self._grad_sum.zero_()
        self._grad_count = 0
        return {f"grad_norm/{n}": v for n, v in zip(self._layer_names, mean)}

    @property
    def _layer_of(self) -> list[str]:
        return self.__layer_of

    @_layer_of.setter
    def _layer_of(self, value: list[str]) -> None:
        self.__layer_of = value
        self._layer_names = list(dict.fromkeys(value))
        self._layer_index = [self._layer_names.index(v) for v in value]

    # -- early stopping -----------------------------------------------------------------------
    def _early_stopping(self, model: nn.Module, logs: dict[str, Any]) -> None:
        es = self.config.early_stopping
        if es is None:
            return
        st = self.state
        if es.monitor not in logs:
            raise ConfigError(f"train.early_stopping.monitor {es.monitor!r} is not a logged "
                              f"metric; available: {', '.join(k for k in logs if '/' not in k)}")
        value = float(logs[es.monitor])
        mode = es.mode if es.mode != "auto" else ("min" if "loss" in es.monitor or
                                                   es.monitor.endswith(("mae", "rmse"))
                                                   else "max")
        better = st.best is None or (value < st.best - es.min_delta if mode == "min"
                                     else value > st.best + es.min_delta)
        if better:
            st.best, st.best_epoch, st.waited = value, st.epoch, 0
            if es.restore_best:
                self._best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            st.waited += 1
            if st.waited >= es.patience:
                st.stopped_early = True
                self.should_stop = True

    # -- checkpoints ----------------------------------------------------------------------------
    def _save(self, model: nn.Module, opt: torch.optim.Optimizer, sched: Any) -> None:
        if self.checkpoint_dir is None:
            return
        if not ckpt.is_finite(model):
            warnings.warn("model has non-finite weights; checkpoint not written", stacklevel=2)
            return
        state = {
            "format": 1, "model": contiguous(model.state_dict()),
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "trainer": dict(self.state.__dict__), "history": self.history,
            "rng": ckpt.rng_state(), "augment_rng": self.augment.generator.get_state()
            if self.augment is not None else None,
            "best_state": contiguous(self._best_state) if self._best_state else None,
            "grad": {"sum": self._grad_sum.clone(), "count": self._grad_count},
            "config": self.config.model_dump(mode="json"),
            "choices": self._c.as_dict(),
            "scaler": self._scaler.state_dict() if self._scaler is not None else None,
        }
        ckpt.save(self.checkpoint_dir / ckpt.CHECKPOINT, state)

    def _load_checkpoint(self) -> dict[str, Any]:
        if self.checkpoint_dir is None:
            raise CheckpointError("resume needs a checkpoint directory")
        return ckpt.load(self.checkpoint_dir / ckpt.CHECKPOINT)

    def _restore(self, model: nn.Module, opt: torch.optim.Optimizer, sched: Any,
                 state: dict[str, Any]) -> None:
        saved, now = state.get("config", {}), self.config.model_dump(mode="json")
        changed = [k for k in now if k not in ("epochs", "progress", "threads")
                   and saved.get(k) != now[k]]
        if changed:
            raise CheckpointError(f"cannot resume: train settings changed since the checkpoint "
                                  f"({', '.join(changed)})")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        self.state = TrainState(**state["trainer"])
        self.history = list(state["history"])
        ckpt.set_rng_state(state["rng"])
        if state.get("augment_rng") is not None and self.augment is not None:
            self.augment.generator.set_state(state["augment_rng"])
        self._best_state = state.get("best_state")
        self._grad_sum = state["grad"]["sum"]
        self._grad_count = state["grad"]["count"]
        if self._scaler is not None and state.get("scaler"):
            self._scaler.load_state_dict(state["scaler"])


def _layers(names: list[str]) -> list[str]:
    """Group parameter names into layers: ``backbone.body.0.weight`` → ``backbone.body.0``."""
    return [n.rsplit(".", 1)[0] if "." in n else n for n in names]


class _sigterm_flag:
    """While active, SIGTERM sets ``trainer._sigterm`` instead of killing the process."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.previous: Any = None

    def __enter__(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.trainer._sigterm = True

    def __exit__(self, *exc: Any) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
