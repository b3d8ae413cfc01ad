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
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from layerwise.config import TrainConfig
from layerwise.data.augment import Augmenter
from layerwise.data.batching import (
    InMemoryBatches,
    LoaderBatches,
    TensorData,
    Tree,
    cat,
    nbytes,
)
from layerwise.data.shards import ShardedData, StreamBatches
from layerwise.errors import CheckpointError, ConfigError
from layerwise.training import checkpoint as ckpt
from layerwise.training import distributed
from layerwise.training.adversarial import AdversarialStep, Box
from layerwise.training.averaging import WeightAverage
from layerwise.training.callbacks import (
    ActivationTelemetry,
    Callback,
    Checkpointing,
    EarlyStopping,
    GradTelemetry,
    LogLines,
    ModelHooks,
    ProgressBar,
    SigtermFlag,
    SlowdownWatch,
)
from layerwise.training.guard import Guard
from layerwise.training.hardware import Choices, choose, compiled, grad_scaler
from layerwise.training.mixup import MixupStep
from layerwise.training.optim import build_optimizer, build_scheduler
from layerwise.training.phases import Phases
from layerwise.training.probe import settle
from layerwise.training.steps import Outcome, PhasedStep, PlainStep
from layerwise.training.trees import as_data, batch_len, contiguous, to_device

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


@dataclass
class _Fit:
    """What one ``fit`` call works with, built once before its first epoch."""

    model: nn.Module
    strategy: PlainStep | PhasedStep
    batches: InMemoryBatches
    val_batches: InMemoryBatches | None
    callbacks: list[Callback]
    channels_last: bool
    device: torch.device


class Trainer:
    """Train any ``nn.Module``; see the module docstring for an example.

    Public while (and after) ``fit`` runs: ``state`` (:class:`TrainState`), ``history``,
    ``choices`` (the hardware choices), ``optimizer`` and ``scheduler`` (for a phased
    model, one of each per phase, keyed by phase), ``strategy`` (the step strategy),
    ``guard`` (the numerics guard), ``telemetry``; ``should_stop`` ends training after the
    current epoch, ``interrupt_requested`` (set by SIGTERM) after the current step.
    """

    def __init__(self, config: TrainConfig | None = None, *,
                 loss_fn: Callable[[Any, Any], torch.Tensor] | None = None,
                 metrics_fn: Callable[[Any, Any], dict[str, float]] | None = None,
                 callbacks: Sequence[Callback] = (),
                 checkpoint_dir: str | Path | None = None,
                 resume: bool = False,
                 augment: Augmenter | None = None,
                 input_boxes: dict[str, Box] | None = None) -> None:
        self.config = config or TrainConfig()
        self.input_boxes = input_boxes  # train.adversarial: raw units and ranges per input
        self.loss_fn = loss_fn
        self.metrics_fn = metrics_fn
        self.callbacks = list(callbacks)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.resume = resume
        self.augment = augment
        self.state = TrainState()
        self.history: list[dict[str, Any]] = []
        self.should_stop = False
        self.interrupt_requested = False
        self.steps_per_epoch = 0
        self.choices: Choices | None = None   # set by fit: device, precision, threads, ...
        self.guard = Guard(self.config.max_nonfinite_steps,
                           "lower train.optimizer.lr, set train.grad_clip, or check the "
                           "inputs for NaN")
        self.model: nn.Module | None = None
        self.optimizer: Any = None
        self.scheduler: Any = None
        self.strategy: PlainStep | PhasedStep | None = None
        self.telemetry = GradTelemetry([])
        self.activations = ActivationTelemetry()
        self.early_stopping = EarlyStopping(self.config.early_stopping) \
            if self.config.early_stopping else None
        self.scaler: torch.amp.GradScaler | None = None
        self.ema: WeightAverage | None = None           # train.ema, built by fit
        self.forward_module: nn.Module | None = None   # the model, compiled or parallel
        self.world: distributed.World | None = None    # set by fit under torchrun
        self.replicas = 1   # ranks one process computes each step as (train.replicas)
        self._replica_hooks: list[Any] = []
        self._stream: dict[str, Any] | None = None     # streamed training data's identity

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
        saved = self._load_checkpoint() if self.resume else None
        choices = self._choose(model, train_data, saved)
        ckpt.seed_all(cfg.seed)
        device = torch.device(choices.device)
        self.world = self._join(model, device)
        try:
            return self._fit_joined(model, train_data, validation, saved, choices, device)
        finally:  # the model leaves as it came, also when training raises
            self._leave(model)

    def _fit_joined(self, model: nn.Module, train_data: Any, validation: Any,
                    saved: dict[str, Any] | None, choices: Choices, device: torch.device
                    ) -> FitResult:
        cfg = self.config
        channels_last = choices.memory_format == "channels_last"
        model.to(device)
        if channels_last:
            model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        batches = self._batches(train_data, choices, shuffle=True, device=device)
        self._stream = train_data.identity if isinstance(train_data, ShardedData) else None
        val_batches = self._batches(as_data(validation), choices, shuffle=False,
                                    device=device, batch_size=cfg.batch_size * 4) \
            if validation is not None else None
        self.steps_per_epoch = math.ceil(len(batches) / cfg.accumulate)
        strategy = self._build_strategy(model, len(batches))
        if saved is None or not saved.get("choices"):  # after the config checks above
            batch = to_device(next(iter(batches.epoch(0))), device, channels_last)
            settle(choices, cfg, model, batch, device, lambda m: self.training_step(m, batch))
        if self.world is not None or self.replicas > 1:
            choices = self._agree(choices, self.world)
        torch.set_num_threads(choices.threads)
        self.scaler = grad_scaler(choices, device)
        self.forward_module = distributed.parallel(model, device) if self.world else \
            compiled(model, cfg.compile, device, self.steps_per_epoch * cfg.epochs, choices)
        if self.augment is None:
            self.augment = Augmenter({}, cfg.seed)
        self.telemetry = GradTelemetry([n for n, p in model.named_parameters()
                                        if p.requires_grad])
        self.activations = ActivationTelemetry(model, cfg.telemetry_every)
        self.history, self.state = [], TrainState()
        self.ema = WeightAverage(model, cfg.ema.decay, cfg.ema.warmup) if cfg.ema else None
        if saved is not None:
            self._restore(model, saved)
        run = _Fit(model, strategy, batches, val_batches, self._all_callbacks(),
                   channels_last, device)
        for cb in run.callbacks:
            cb.on_fit_start(self, model)
        interrupted = False
        with SigtermFlag(self):
            while self.state.epoch < cfg.epochs and not self.should_stop and not interrupted:
                interrupted = self._run_epoch(run)
        if self.ema is not None and not interrupted:
            self.ema.copy_to_model()  # the run ends with the weights it was scored with
        result = FitResult(self.history, choices.as_dict(), self.state, interrupted,
                           {"epoch": self.state.best_epoch + 1, "value": self.state.best})
        for cb in run.callbacks:
            cb.on_fit_end(self, result)
        return result

    def _leave(self, model: nn.Module) -> None:
        """Undo what :meth:`_join` did to the model's layers."""
        if self.world is not None:
            distributed.convert(model, to_rank=False)
        if self.replicas > 1:
            distributed.unemulate(model, self._replica_hooks)
            self._replica_hooks = []

    def _join(self, model: nn.Module, device: torch.device) -> distributed.World | None:
        """Under torchrun: join the run's process group and make the model's batch-norm and
        dropout layers see the whole batch (see :mod:`layerwise.training.distributed`)."""
        world = distributed.join(device)
        size = getattr(self.config, "replicas", 1)
        self.replicas = size if world is None else 1
        if world is not None and size not in (1, world.size):
            raise ConfigError(f"train.replicas is {size} but the run has {world.size} "
                              f"processes: run --nproc {size}, or drop train.replicas")
        if world is None and size == 1:
            return None
        distributed.check_model(model)
        if getattr(self.config, "adversarial", None) is not None:
            raise ConfigError("train.adversarial trains in one process; drop --nproc and "
                              "train.replicas")
        if world is None and type(self).training_step is not Trainer.training_step:
            raise ConfigError("train.replicas computes each rank's loss with compute_loss; "
                              "this Trainer overrides training_step: run --nproc "
                              f"{size}, or drop train.replicas")
        if world is None:  # one process computing each step as the ranks would
            self._replica_hooks = distributed.emulate(model, size)
            return None
        distributed.convert(model)
        return world

    def _agree(self, choices: Choices, world: distributed.World | None) -> Choices:
        """Rank 0's choices on every rank (they change the arithmetic), with the threads
        of this rank's share of the machine's cores; one process computing the ranks
        (train.replicas) takes one rank's threads, for a rank's arithmetic."""
        import os

        agreed = Choices.from_dict(world.agree(choices.as_dict())) if world else choices
        local = world.local_size if world else self.replicas
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else os.cpu_count() or 1
        agreed.threads = self.config.threads or max(1, cores // local)
        agreed.reasons["threads"] = f"{local} processes share {cores} cores" if world else \
            f"a rank's share of {cores} cores (train.replicas: {local})"
        self.choices = agreed
        return agreed

    def _choose(self, model: nn.Module, train_data: Any, saved: dict[str, Any] | None
                ) -> Choices:
        """The hardware choices: a resumed run keeps its first part's (threads and
        precision change the arithmetic, and it must end with an uninterrupted run's
        weights); a new run makes them here and settles them on its first batch."""
        cfg = self.config
        kept = saved.get("choices") if saved else None
        if kept:
            self.choices = Choices.from_dict(kept)
            if cfg.threads:  # threads may be changed on resume, by the user only
                self.choices.threads = cfg.threads
                self.choices.reasons["threads"] = "set in config"
            return self.choices
        size = nbytes(train_data.inputs) + nbytes(train_data.targets) \
            if isinstance(train_data, TensorData) else 0
        self.choices = choose(cfg, model, size)
        if isinstance(train_data, ShardedData):  # the data stage chose to stream it
            self.choices.batching = "stream"
            self.choices.reasons["batching"] = (f"data ({train_data.nbytes / 2**20:.0f} MiB) "
                                                "streams from shards on disk")
        return self.choices

    def _build_strategy(self, model: nn.Module, n_batches: int) -> PlainStep | PhasedStep:
        cfg = self.config
        self.model = model
        total = self.steps_per_epoch * cfg.epochs
        if cfg.adversarial is not None and getattr(model, "phases", ()):
            raise ConfigError("train.adversarial is for models trained in one step; a "
                              "phased model (gan) cannot use it")
        mixup = cfg.mixup
        if mixup is not None:
            if getattr(model, "phases", ()) or cfg.adversarial is not None:
                raise ConfigError("train.mixup blends the batches of a plain step; it "
                                  "cannot go with a phased model (gan) or "
                                  "train.adversarial")
            if self.world is not None or self.replicas > 1:
                raise ConfigError("train.mixup blends rows across the whole batch and "
                                  "trains in one process, without train.replicas")
        if getattr(model, "phases", ()):  # e.g. a GAN: one optimizer per phase
            phases = Phases(model, cfg, total, self.steps_per_epoch)
            self.optimizer, self.scheduler = phases.optimizer, phases.scheduler
            self.strategy = PhasedStep(self, model, phases)
            return self.strategy
        if cfg.optimizers:
            raise ConfigError("train.optimizers is for models trained in phases (gan); "
                              "use train.optimizer")
        params = [p for p in model.parameters() if p.requires_grad]
        # a model may train its parts at different rates (models/pretrained.py)
        groups = getattr(model, "param_groups", lambda lr: None)(cfg.optimizer.lr)
        self.optimizer = build_optimizer(groups or params, cfg.optimizer)
        self.scheduler = build_scheduler(self.optimizer, cfg.schedule, total,
                                         self.steps_per_epoch)
        step = (self, model, self.optimizer, self.scheduler, n_batches)
        self.strategy = AdversarialStep(*step, self.input_boxes) \
            if cfg.adversarial is not None else MixupStep(*step) if mixup is not None \
            else PlainStep(*step)
        return self.strategy

    def _all_callbacks(self) -> list[Callback]:
        """Early stopping first (it decides before anyone sees the epoch), the user's,
        progress, then checkpointing last (a callback that raises stops the save)."""
        first = [self.early_stopping] if self.early_stopping else []
        return [*first, self.activations, *self.callbacks, *self._progress_callbacks(),
                SlowdownWatch(), Checkpointing(), ModelHooks()]

    def _batches(self, data: Any, choices: Choices, *, shuffle: bool, device: torch.device,
                 batch_size: int | None = None) -> InMemoryBatches:
        if isinstance(data, InMemoryBatches):
            return data
        bs, seed = batch_size or self.config.batch_size, self.config.seed
        if isinstance(data, ShardedData):  # larger than memory: shard by shard
            return StreamBatches(data, bs, shuffle=shuffle, seed=seed,
                                 pin_memory=device.type == "cuda")
        if isinstance(data, TensorData) and choices.batching == "memory":
            data = TensorData(to_device(data.inputs, device, False),
                              to_device(data.targets, device, False))
            return InMemoryBatches(data, bs, shuffle=shuffle, seed=seed)
        # a user's Dataset, or the loader path: page-locked batches copy to a GPU async
        return LoaderBatches(data, bs, shuffle=shuffle, seed=seed,
                             pin_memory=device.type == "cuda")

    def _progress_callbacks(self) -> list[Callback]:
        mode = self.config.progress
        if self.world is not None and not self.world.main:
            return []  # rank 0 reports for the run
        if mode == "auto":
            import sys

            mode = "bar" if sys.stderr.isatty() else "log"
        return {"bar": [ProgressBar()], "log": [LogLines()]}.get(mode, [])

    def _run_epoch(self, run: _Fit) -> bool:
        """One epoch (or its rest, after a resume); True when SIGTERM interrupted it."""
        st, device = self.state, run.device
        for cb in run.callbacks:
            cb.on_epoch_start(self, st.epoch)
        run.model.train()
        dtype = self._c.autocast_dtype
        autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else nullcontext
        self._clock = time.perf_counter()
        for inputs, targets in run.batches.epoch(st.epoch, start=st.batch):
            inputs = to_device(inputs, device, run.channels_last)
            targets = to_device(targets, device, False)
            if self.augment:
                inputs = self.augment(inputs)
            if self.replicas > 1:  # the ranks' rows, in this process
                with distributed.replica_window(self.replicas, batch_len(targets, inputs)):
                    outcome = run.strategy(inputs, targets, autocast)
            elif self.world is None:
                outcome = run.strategy(inputs, targets, autocast)
            else:  # this rank's rows; random layers draw for the whole batch
                with distributed.batch_window(self.world, batch_len(targets, inputs)) as r:
                    outcome = run.strategy(distributed.take_rows(inputs, r),
                                           distributed.take_rows(targets, r), autocast)
            if outcome is None:  # gradients accumulate
                continue
            self._end_step(outcome, run.callbacks)
            if self.interrupt_requested:
                return True
        st.train_time += time.perf_counter() - self._clock
        self._end_epoch(run)
        return False

    def _end_step(self, outcome: Outcome, callbacks: list[Callback]) -> None:
        """Count the step and its loss, keep the clock, run the step callbacks."""
        st = self.state
        if outcome.taken:
            st.epoch_loss += outcome.loss
            st.epoch_loss_n += 1
            if self.ema is not None:
                self.ema.update()
        st.step += 1
        now = time.perf_counter()
        st.train_time += now - self._clock
        self._clock = now
        for cb in callbacks:
            cb.on_step_end(self, st.step, outcome.loss)
        self._clock += time.perf_counter() - now  # checkpoints are not training time

    def _end_epoch(self, run: _Fit) -> None:
        """The history row, validation, the epoch callbacks, then the epoch checkpoint.
        With ``train.ema`` the averaged weights are in the model from validation to the
        last epoch callback; the checkpoint holds the live ones."""
        with self.ema.swapped_in() if self.ema is not None else nullcontext():
            self._score_epoch(run)
        self.save_checkpoint()

    def _score_epoch(self, run: _Fit) -> None:
        st = self.state
        logs: dict[str, Any] = {"epoch": st.epoch + 1, "step": st.step,
                                "train_loss": st.epoch_loss / max(1, st.epoch_loss_n),
                                "lr": self.optimizer.param_groups[0]["lr"],
                                "skipped_steps": st.skipped, "time": round(st.train_time, 3)}
        if run.val_batches is not None:
            val = self.evaluate(run.model, run.val_batches, run.channels_last, run.device)
            logs.update(val)
            for cb in run.callbacks:
                cb.on_validation_end(self, st.epoch, val)
        logs.update(run.strategy.epoch_logs())
        logs.update(self.telemetry.epoch_logs())
        logs.update(self.activations.epoch_logs())
        self.history.append(logs)
        for cb in run.callbacks:
            cb.on_epoch_end(self, st.epoch, logs)
        st.epoch += 1
        st.batch = 0
        st.epoch_loss, st.epoch_loss_n = 0.0, 0
        st.phase_sums = {}

    @property
    def _c(self) -> Choices:
        if self.choices is None:
            raise RuntimeError("the Trainer's choices are made by fit()")
        return self.choices

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

    # -- checkpoints ----------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        """Write ``checkpoint_dir/last.ckpt`` atomically (a no-op without a directory, or
        while the model holds non-finite weights)."""
        if self.checkpoint_dir is None or self.model is None or (
                self.world is not None and not self.world.main):  # rank 0 writes
            return
        if not ckpt.is_finite(self.model):
            import warnings

            warnings.warn("model has non-finite weights; checkpoint not written", stacklevel=2)
            return
        state = {
            "format": 1, "model": contiguous(self.model.state_dict()),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "trainer": dict(self.state.__dict__), "history": self.history,
            "rng": ckpt.rng_state(), "augment_rng": self.augment.generator.get_state()
            if self.augment is not None else None,
            "best_state": self.early_stopping.state_dict() if self.early_stopping else None,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "grad": self.telemetry.state_dict(),
            "activations": self.activations.state_dict(),
            "config": self.config.model_dump(mode="json"),
            "choices": self._c.as_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "stream": self._stream,  # which shards the batch position counts in
        }
        ckpt.save(self.checkpoint_dir / ckpt.CHECKPOINT, state)

    def _load_checkpoint(self) -> dict[str, Any] | None:
        """The checkpoint to resume from; None (start from the beginning, and say so) when
        the run was stopped before its first checkpoint: a requeued job or an elastic
        restart repeats its command line, ``--resume`` included."""
        if self.checkpoint_dir is None:
            raise CheckpointError("resume needs a checkpoint directory")
        path = self.checkpoint_dir / ckpt.CHECKPOINT
        if not path.exists():
            ckpt.say_fresh_start(path)
            return None
        return ckpt.load(path)

    def _restore(self, model: nn.Module, state: dict[str, Any]) -> None:
        saved, now = state.get("config", {}), self.config.model_dump(mode="json")
        changed = [k for k in now if k not in ckpt.MAY_CHANGE and saved.get(k) != now[k]]
        if changed:
            raise CheckpointError(f"cannot resume: train settings changed since the checkpoint "
                                  f"({', '.join(changed)})")
        if state.get("stream") != self._stream and (state.get("stream") or self._stream):
            raise CheckpointError("cannot resume: the streamed training data changed since "
                                  f"the checkpoint ({state.get('stream')} → {self._stream}); "
                                  "its batch position would count other rows")
        model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.state = TrainState(**state["trainer"])
        self.history = list(state["history"])
        ckpt.set_rng_state(state["rng"])
        if state.get("augment_rng") is not None and self.augment is not None:
            self.augment.generator.set_state(state["augment_rng"])
        if self.early_stopping is not None:
            self.early_stopping.load_state_dict(state.get("best_state"))
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.telemetry.load_state_dict(state["grad"])
        self.activations.load_state_dict(state.get("activations"))
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
