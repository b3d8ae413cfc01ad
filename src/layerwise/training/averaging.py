"""An exponential moving average of the weights (``train.ema``).

After every optimizer step that was taken, each floating-point entry of the model's state
(parameters and buffers such as batch-norm statistics) moves toward the live value::

    shadow ← shadow + (1 − d) · (live − shadow),   d = min(decay, (1 + n) / (10 + n))

where ``n`` counts the updates (the second term, TensorFlow's ``num_updates`` rule, lets
the first, random-ish weights fade fast; ``warmup: false`` uses ``decay`` throughout).
Integer buffers (batch norm's step count) are copied. Validation scores the averaged
weights (swapped in for the evaluation and the epoch's callbacks, so early stopping keeps
the averaged weights of its best epoch) and the run ends with them in the model; the live
weights keep training, and a checkpoint holds both, so a resumed run continues exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


class WeightAverage:
    """The shadow weights of one model; build it after the model is on its device and in
    its memory format (the live tensors are read by reference, once)."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True) -> None:
        self.decay, self.warmup, self.updates = decay, warmup, 0
        named = [*model.named_parameters(), *model.named_buffers()]
        self.keys = [k for k, _ in named]
        self._live = [v.detach() for _, v in named]  # views of the live tensors
        self.shadow = [v.detach().clone() for v in self._live]
        self._float = [i for i, v in enumerate(self._live) if v.is_floating_point()]
        self._other = [i for i, v in enumerate(self._live) if not v.is_floating_point()]

    def rate(self) -> float:
        """The share of the live weights the next update takes in (1 − d)."""
        n = self.updates + 1
        d = min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay
        return 1.0 - d

    @torch.no_grad()
    def update(self) -> None:
        weight = self.rate()
        self.updates += 1
        if self._float:
            torch._foreach_lerp_([self.shadow[i] for i in self._float],
                                 [self._live[i] for i in self._float], weight)
        for i in self._other:
            self.shadow[i].copy_(self._live[i])

    @contextmanager
    def swapped_in(self) -> Iterator[None]:
        """The averaged weights in the model for the block; the live ones back after."""
        kept = [v.clone() for v in self._live]
        self.copy_to_model()
        try:
            yield
        finally:
            _copy(self._live, kept)

    def copy_to_model(self) -> None:
        _copy(self._live, self.shadow)

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates,
                "shadow": {k: v.contiguous() for k, v in zip(self.keys, self.shadow)}}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = int(state["updates"])
        for k, v in zip(self.keys, self.shadow):
            v.copy_(state["shadow"][k])


@torch.no_grad()
def _copy(dst: list[torch.Tensor], src: list[torch.Tensor]) -> None:
    torch._foreach_copy_(dst, src)
