"""Training in phases: one optimizer and schedule per phase, inside the shared loop.

A model that defines ``phases`` (a GAN: ``("discriminator", "generator")``),
``phase_parameters(phase)`` and ``phase_loss(phase, inputs) -> (loss, logs)`` is trained
by the same :class:`~layerwise.training.Trainer` as any other model: the Trainer keeps the
data order, checkpoints, the numerics guard and the callbacks; per batch it runs every phase
in order — zero all gradients, the phase's loss, backward, guard, clip, that phase's
optimizer — then steps every phase's schedule once. A phase may be named more than once
(``("discriminator", "discriminator", "generator")``: two discriminator updates per batch);
it keeps one optimizer, and its schedule still advances once per batch, so schedules stay
functions of the batch step. ``train.optimizers.<phase>`` overrides ``train.optimizer``.

The optimizers and schedules of all phases are saved and restored together (one state dict
each), so a phased run resumes exactly like any other.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import nn

from layerwise.config import TrainConfig
from layerwise.errors import ConfigError
from layerwise.training.guard import Guard
from layerwise.training.optim import build_optimizer, build_scheduler


class _ByPhase:
    """Objects keyed by phase, saved and restored as one state dict."""

    def __init__(self, items: dict[str, Any]) -> None:
        self.items = items

    def state_dict(self) -> dict[str, Any]:
        return {k: o.state_dict() for k, o in self.items.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, o in self.items.items():
            o.load_state_dict(state[k])


class PhaseOptimizers(_ByPhase):
    """The optimizers of every phase, seen as one (state dict, param groups)."""

    @property
    def opts(self) -> dict[str, torch.optim.Optimizer]:
        return self.items

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return next(iter(self.items.values())).param_groups


class PhaseSchedulers(_ByPhase):
    @property
    def scheds(self) -> dict[str, Any]:
        return self.items


class Phases:
    """Optimizers, schedules and the per-phase step of a model trained in phases."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, total_steps: int,
                 steps_per_epoch: int) -> None:
        self.names: tuple[str, ...] = tuple(model.phases)  # type: ignore[arg-type]
        unknown = sorted(set(cfg.optimizers) - set(self.names))
        if unknown:
            raise ConfigError(f"train.optimizers names unknown phases {unknown}; this model's "
                              f"phases: {list(self.names)}")
        if cfg.accumulate > 1:
            raise ConfigError("train.accumulate must be 1 for a model trained in phases "
                              f"({', '.join(self.names)})")
        self.params = {p: [q for q in model.phase_parameters(p)  # type: ignore[operator]
                           if q.requires_grad] for p in self.names}
        opts = {p: build_optimizer(self.params[p], cfg.optimizers.get(p, cfg.optimizer))
                for p in self.names}
        self.optimizer = PhaseOptimizers(opts)
        self.scheduler = PhaseSchedulers({p: build_scheduler(o, cfg.schedule, total_steps,
                                                             steps_per_epoch)
                                          for p, o in opts.items()})
        self.cfg = cfg
        self.guard = Guard(cfg.max_nonfinite_steps, "a phase's loss or gradient was not "
                           "finite: lower the learning rates or set train.grad_clip", "steps")

    def step(self, model: nn.Module, inputs: Any, state: Any, sched_active: bool
             ) -> float | None:
        """All phases on one batch. Returns the summed loss, or None if a phase's loss or
        gradient was not finite (that phase's update is skipped, the others go on)."""
        total, finite = 0.0, True
        logs: dict[str, torch.Tensor] = {}
        for name in self.names:
            opt = self.optimizer.opts[name]
            params = self.params[name]
            model.zero_grad(set_to_none=True)
            loss, extra = model.phase_loss(name, inputs)  # type: ignore[operator]
            loss.backward()
            v = self.guard.measure(params, loss, clip=self.cfg.grad_clip)
            if v.finite:
                opt.step()
                total += v.loss
            else:
                finite = False
            logs[f"{name}_loss"] = loss.detach()
            logs.update({k: v.detach() for k, v in extra.items()})
        model.zero_grad(set_to_none=True)
        if sched_active:  # once per batch, even for a phase that runs several times in it:
            with warnings.catch_warnings():  # schedules are functions of the batch step
                warnings.simplefilter("ignore", UserWarning)
                for sched in self.scheduler.scheds.values():
                    sched.step()
        if not finite:
            self.guard.skip(state, math.nan)
            return None
        self.guard.ok(state)
        values = dict(zip(logs, torch.stack([v.float() for v in logs.values()]).tolist()))
        for k, v in values.items():
            state.phase_sums[k] = state.phase_sums.get(k, 0.0) + v
        return total

    def epoch_logs(self, state: Any) -> dict[str, float]:
        """Per-phase means of the epoch's losses and logs, and each phase's learning rate."""
        n = max(1, state.epoch_loss_n)
        logs = {f"train_{k}": v / n for k, v in state.phase_sums.items()}
        logs.update({f"lr_{p}": o.param_groups[0]["lr"] for p, o in self.optimizer.opts.items()})
        return logs
