"""The numerics guard: one for the Trainer, phased models, DQN and PPO.

Every optimizer step asks the guard first. It computes the global gradient norm (the
per-tensor norms come with it, which is where per-layer telemetry comes from) and the loss
in one host sync, clips if asked, and says whether the step may be taken. A step whose loss
or gradient is not finite is skipped and counted; too many in a row abort with a
:class:`~layerwise.errors.NonFiniteError` whose message says what to try.

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
    loss: float           # the loss as a float (divided by the micro-batch count)
    norm: float           # the global gradient norm before clipping
    norms: torch.Tensor   # per-tensor gradient norms [n_tensors]
    tensors: int          # how many parameters had a gradient


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
                clip: float | None = None, micro: int = 1) -> Verdict:
        """Global gradient norm and loss in one host sync; clips a finite step if asked."""
        grads = [p.grad for p in params if p.grad is not None]
        norms = torch.stack(torch._foreach_norm(grads)) if grads else torch.zeros(1)
        total = torch.linalg.vector_norm(norms)
        norm_value, loss_value = torch.stack([total, loss.detach().float()]).tolist()
        loss_value /= micro
        finite = math.isfinite(norm_value) and math.isfinite(loss_value)
        if finite and clip is not None and norm_value > clip:
            torch._foreach_mul_(grads, clip / (norm_value + 1e-6))
        return Verdict(finite, loss_value, norm_value, norms, len(grads))

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
