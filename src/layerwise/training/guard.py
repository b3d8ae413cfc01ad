"""The numerics guard: one for the Trainer, phased models, DQN and PPO.

Every optimizer step asks the guard first, with one pass over the gradients and, on an
accelerator, one host sync for the loss and the verdict together (on the CPU the scalars
are read one by one: 0.2 us each, against ~10 us to stack them). Where nothing needs a
norm, the pass is each gradient's sum: under IEEE arithmetic a sum that holds an inf or a
NaN is never finite, so a finite sum proves every element finite, and only a non-finite sum
(an inf or NaN inside, or finite values whose sum overflowed) sends that tensor to the
exact ``isfinite`` check. Where the per-layer telemetry needs norms (every
``telemetry_every`` steps), the pass is ``_foreach_norm``, and a non-finite norm gets the
same exact check, so the verdict does not depend on the step. With clipping the global norm
must be finite as well (a norm of finite values overflows only above ~1e19 per element). In
place, after a backward pass, a sum costs about two thirds of an L2 norm over the same
gradients (docs/benchmarks.md).

A step whose loss or gradient is not finite is skipped and counted; too many in a row abort
with a :class:`~layerwise.errors.NonFiniteError` whose message says what to try.

    >>> import torch
    >>> from types import SimpleNamespace
    >>> g, counts = Guard(limit=3, advice="lower the learning rate"), SimpleNamespace(
    ...     skipped=0, bad_in_row=0)
    >>> w = torch.nn.Parameter(torch.ones(2)); (w * float("nan")).sum().backward()
    >>> v = g.measure([w], torch.tensor(1.0)); v.finite
    False
    >>> g.skip(counts, v.loss); counts.skipped, counts.bad_in_row
    (1, 1)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from layerwise.errors import NonFiniteError


@dataclass
class Verdict:
    """What the guard found for one step."""

    finite: bool
    loss: float                  # the loss as a float (divided by the micro-batch count)
    norm: float | None           # the global gradient norm before clipping, if measured
    norms: torch.Tensor | None   # per-tensor gradient norms [n_tensors], if measured
    tensors: int                 # how many parameters had a gradient


class Counters:
    """Where a guard keeps its counts (the Trainer's state, an agent: anything with these)."""

    skipped: int
    bad_in_row: int


class Guard:
    """Judges each step; ``limit`` counted non-finite steps in a row abort with ``advice``.

    ``what`` names the steps in the message ("optimizer steps", "DQN updates"). The counts
    live on the object passed to :meth:`skip` and :meth:`ok`, so they are saved and
    restored with it.
    """

    def __init__(self, limit: int | None, advice: str, what: str = "optimizer steps") -> None:
        self.limit, self.advice, self.what = limit, advice, what

    @staticmethod
    def measure(params: Iterable[torch.nn.Parameter], loss: torch.Tensor, *,
                clip: float | None = None, micro: int = 1, norms: bool = False) -> Verdict:
        """The verdict on the gradients and the loss; clips a finite step if asked.
        ``norms=True`` (or a ``clip``) measures the per-tensor and global L2 norms too;
        otherwise the check is the cheaper exact sum test (module docstring)."""
        grads = [p.grad for p in params if p.grad is not None]
        want = norms or clip is not None
        parts = torch._foreach_norm(grads) if want else [g.sum() for g in grads]
        if loss.device.type == "cpu":
            values = [float(v) for v in parts]
            loss_value = float(loss.detach())
        else:  # one host sync for the whole verdict
            *values, loss_value = torch.stack([*parts, loss.detach().float()]).tolist()
        loss_value /= micro
        norm = math.sqrt(math.fsum(v * v for v in values)) if want else None
        if norm is not None and (math.isfinite(norm) or clip is not None):
            finite = math.isfinite(norm) and math.isfinite(loss_value)  # clipping needs it
        else:  # every element finite: the same verdict on steps with norms and without
            finite = math.isfinite(loss_value) and all(
                math.isfinite(v) or bool(torch.isfinite(g).all())
                for v, g in zip(values, grads))
        if finite and clip is not None and norm > clip:  # type: ignore[operator]
            torch._foreach_mul_(grads, clip / (norm + 1e-6))  # type: ignore[operator]
        per_tensor = torch.tensor(values) if want else None
        return Verdict(finite, loss_value, norm, per_tensor, len(grads))

    @staticmethod
    def measure_clipped(params: Iterable[torch.nn.Parameter], loss: torch.Tensor,
                        max_norm: float | None) -> Verdict:
        """The same verdict, clipping with ``torch.nn.utils.clip_grad_norm_`` first (the
        agents' convention: the factor is computed in the gradients' dtype)."""
        params = list(params)
        if max_norm is not None:
            norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        else:
            norm = torch.zeros(())
        finite = bool(torch.isfinite(loss) & torch.isfinite(norm))
        return Verdict(finite, float(loss.detach()), float(norm), norm.reshape(1), len(params))

    def skip(self, counters: Any, loss: float, *, counts: bool = True,
             total_limit: int | None = None) -> None:
        """Record a skipped step on ``counters``; raise once ``limit`` came in a row, or
        once ``total_limit`` were skipped in all (for loops of many small updates, PPO).

        ``counts=False`` records it without counting it towards the limit (an fp16
        gradient overflow, which the loss scaler handles by itself).
        """
        counters.skipped += 1
        if total_limit is not None and counters.skipped >= total_limit:
            raise NonFiniteError(f"{counters.skipped} {self.what} of the run had a "
                                 f"non-finite loss or gradient (last loss {loss}); "
                                 f"{self.advice}")
        if not counts:
            return
        counters.bad_in_row += 1
        if self.limit is not None and counters.bad_in_row >= self.limit:
            raise NonFiniteError(f"{counters.bad_in_row} {self.what} in a row had a "
                                 f"non-finite loss or gradient (last loss {loss}); "
                                 f"{self.advice}")

    @staticmethod
    def ok(counters: Any) -> None:
        """A step that was taken: the run of bad steps is over."""
        counters.bad_in_row = 0
