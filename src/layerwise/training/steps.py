"""Step strategies: how one batch becomes an optimizer step, chosen once in ``fit``.

``PlainStep`` is automatic optimisation (forward, loss, backward, accumulation, the guard,
clip, one optimizer); ``PhasedStep`` runs a model's phases in order, one optimizer each (a
GAN, see :mod:`layerwise.training.phases`). Lightning keeps the same split between its
automatic and manual optimisation loops. A strategy returns an :class:`Outcome` when an
optimizer step ended, ``None`` while gradients accumulate.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from layerwise.training.distributed import loss_share, replica_loss
from layerwise.training.phases import Phases
from layerwise.training.trees import batch_len


@dataclass
class Outcome:
    loss: float       # the step's mean loss (nan where a phased step was skipped)
    taken: bool       # False: skipped by the numerics guard


class PlainStep:
    """One optimizer over every trainable parameter, ``train.accumulate`` micro-batches."""

    def __init__(self, trainer: Any, model: nn.Module, opt: torch.optim.Optimizer,
                 sched: Any, n_batches: int) -> None:
        self.trainer, self.model, self.opt, self.sched = trainer, model, opt, sched
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.n_batches = n_batches
        self.step_loss: torch.Tensor | None = None
        self.on_step_end: Callable[[], None] | None = getattr(model, "on_step_end", None)

    def __call__(self, inputs: Any, targets: Any,
                 autocast: Callable[[], AbstractContextManager[Any]]) -> Outcome | None:
        t, st, acc = self.trainer, self.trainer.state, self.trainer.config.accumulate
        with autocast():
            loss = self.loss(inputs, targets)
        if t.world is not None:  # this rank's part of the batch's mean loss
            loss = loss * loss_share()
        scaled = loss / acc if acc > 1 else loss
        (t.scaler.scale(scaled) if t.scaler else scaled).backward()
        if t.replicas > 1:  # the ranks' sum: their mean, as the all-reduce reports it
            loss = loss / t.replicas
        self.step_loss = loss.detach() if self.step_loss is None else \
            self.step_loss + loss.detach()
        st.batch += 1
        st.samples += batch_len(targets, inputs)
        if st.batch % acc and st.batch != self.n_batches:
            return None
        step_loss, self.step_loss = self.step_loss, None
        return self.update(step_loss, (st.batch - 1) % acc + 1)

    def loss(self, inputs: Any, targets: Any) -> torch.Tensor:
        """The batch's loss, under the step's autocast (a strategy may change the batch)."""
        t = self.trainer
        return replica_loss(t, inputs, targets) if t.replicas > 1 else \
            t.training_step(t.forward_module, (inputs, targets))

    def update(self, step_loss: torch.Tensor, micro: int) -> Outcome:
        """Guard, telemetry, clip, update; a skipped step still steps the schedule, to
        stay aligned with the step count."""
        t, st, cfg, scaler = self.trainer, self.trainer.state, self.trainer.config, \
            self.trainer.scaler
        if scaler is not None:
            scaler.unscale_(self.opt)
        if t.world is not None:
            step_loss = self._agree(step_loss)
        sampled = st.step % cfg.telemetry_every == 0  # the steps whose norms are logged
        v = t.guard.measure(self.params, step_loss, clip=cfg.grad_clip, micro=micro,
                            norms=sampled)
        if v.finite:
            t.guard.ok(st)
            if sampled:
                t.telemetry.record(v.norms, v.tensors)
            self.opt.step() if scaler is None else scaler.step(self.opt)
            if self.on_step_end is not None:
                self.on_step_end()
        else:
            # an fp16 gradient overflow is the scaler's business (it lowers the scale);
            # only a non-finite loss, or any non-finite step in fp32/bf16, counts here
            t.guard.skip(st, v.loss, counts=scaler is None or not math.isfinite(v.loss))
        if scaler is not None:
            scaler.update()
        step_schedule(self.sched, t.config)
        self.opt.zero_grad(set_to_none=True)
        return Outcome(v.loss, v.finite)

    def epoch_logs(self) -> dict[str, float]:
        return {}

    def _agree(self, step_loss: torch.Tensor) -> torch.Tensor:
        """The batch's loss, from every rank's part, in the all-reduce that also tells
        every rank whether one of them was asked to stop (SIGTERM reaches each worker at
        its own moment; they must stop after the same step)."""
        t = self.trainer
        both = t.world.mean(torch.stack([step_loss.float(),
                                         torch.tensor(float(t.interrupt_requested))]))
        t.interrupt_requested = bool(both[1] > 0)
        return both[0]


class PhasedStep:
    """Every phase of the model on each batch (see :class:`Phases`)."""

    def __init__(self, trainer: Any, model: nn.Module, phases: Phases) -> None:
        self.trainer, self.model, self.phases = trainer, model, phases
        self.on_step_end: Callable[[], None] | None = getattr(model, "on_step_end", None)

    def __call__(self, inputs: Any, targets: Any,
                 autocast: Callable[[], AbstractContextManager[Any]]) -> Outcome:
        t, st = self.trainer, self.trainer.state
        st.batch += 1
        st.samples += batch_len(targets, inputs)
        with autocast():
            loss = self.phases.step(self.model, inputs, st, schedule_active(t.config))
        if loss is None:
            return Outcome(math.nan, False)
        if self.on_step_end is not None:
            self.on_step_end()
        return Outcome(loss, True)

    def epoch_logs(self) -> dict[str, float]:
        return self.phases.epoch_logs(self.trainer.state)


def schedule_active(cfg: Any) -> bool:
    """A constant schedule without warm-up never changes the rate: it is not stepped."""
    return cfg.schedule.name != "constant" or cfg.schedule.warmup_steps > 0


def step_schedule(sched: Any, cfg: Any) -> None:
    if schedule_active(cfg):
        with warnings.catch_warnings():
            # torch warns when a schedule steps before the first update; it must step
            # anyway to stay aligned with the step count
            warnings.simplefilter("ignore", UserWarning)
            sched.step()
