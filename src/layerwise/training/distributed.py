"""Data-parallel training over processes (torchrun, DistributedDataParallel), exact.

``layerwise train CONFIG --nproc N`` launches torchrun, or torchrun launches
``python -m layerwise train …`` itself; each worker finds its place in the environment
torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``) and joins one process group
(gloo on CPU, NCCL on a GPU, with a timeout so that a lost peer ends the run instead of
hanging it).

The config means the same on 1 or N processes. Every rank walks the same seeded order of
global batches (``train.batch_size`` rows each) and takes its contiguous slice of each
batch; the loss of a slice is weighted by its share of the batch, so the gradients that
DDP averages are those of the whole batch. What draws random numbers draws them for the
whole batch on every rank and keeps its own rows: the image augmentations (applied to the
global batch before slicing) and dropout (:class:`RankDropout`). Batch-norm statistics are
those of the whole batch (:class:`RankBatchNorm`, which also runs on CPU, where torch's
``SyncBatchNorm`` does not). Every rank therefore holds the same weights, optimizer and
random state after each step, as one process would (up to the order of float additions in
the all-reduce), and a checkpoint written by rank 0 resumes on any number of processes.

Exactness has limits, stated in docs/decisions.md: dropout inside fused kernels (attention
dropout, dropout between stacked recurrent layers) draws per rank; the phased families (a
GAN), the generative families that sample noise in their forward pass, and reinforcement
learning do not train distributed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from layerwise.errors import ConfigError

TIMEOUT = timedelta(minutes=30)   # a peer silent this long ends the run (NCCL hangs)


@dataclass(frozen=True)
class World:
    """This process's place among the workers of one run."""

    rank: int
    size: int
    local_size: int   # workers on this machine (they share its cores)

    @property
    def main(self) -> bool:
        """Rank 0 alone writes the run folder, its logs and checkpoints."""
        return self.rank == 0

    def rows(self, n: int) -> slice:
        """This rank's contiguous share of a batch of ``n`` rows."""
        return slice(n * self.rank // self.size, n * (self.rank + 1) // self.size)

    def share(self, n: int) -> float:
        """The factor that makes this rank's mean loss over its rows count as its part of
        the batch's mean (DDP then averages the gradients over ranks)."""
        r = self.rows(n)
        return (r.stop - r.start) * self.size / n

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean over ranks of a tensor (a loss already weighted by :meth:`share`)."""
        out = value.detach().clone()
        dist.all_reduce(out)
        return out / self.size

    def agree(self, state: dict[str, Any]) -> dict[str, Any]:
        """Rank 0's ``state`` on every rank (as JSON bytes: nothing is unpickled)."""
        data = torch.tensor(list(json.dumps(state).encode()) if self.main else [],
                            dtype=torch.uint8)
        size = torch.tensor([data.numel()])
        dist.broadcast(size, 0)
        if not self.main:
            data = torch.empty(int(size), dtype=torch.uint8)
        dist.broadcast(data, 0)
        return json.loads(bytes(data.tolist()).decode())


def current() -> World | None:
    """The world this process belongs to, from torchrun's environment; ``None`` alone."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return None
    return World(int(os.environ.get("RANK", "0")), size,
                 int(os.environ.get("LOCAL_WORLD_SIZE", str(size))))


def restarted() -> bool:
    """Whether torchrun restarted this worker after a failure (an elastic restart)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0


def join(device: torch.device) -> World | None:
    """Join the process group of the run (once per process); ``None`` when alone."""
    world = current()
    if world is not None and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend, timeout=TIMEOUT)
    return world


def check_model(model: nn.Module) -> None:
    """Refuse models whose training cannot be split over ranks exactly."""
    if getattr(model, "phases", ()):
        raise ConfigError("distributed training (--nproc, torchrun) supports models trained "
                          "in one step; a phased model (gan) trains in one process")


# ------------------------------------------------------------------------ the batch window
_window: tuple[int, slice, float] | None = None   # (batch rows, this rank's rows, share)


@contextmanager
def batch_window(world: World, n: int) -> Iterator[slice]:
    """While a rank runs its rows of an ``n``-row batch (yielded): random layers draw for
    all ``n`` rows, and :func:`loss_share` weighs its loss."""
    global _window
    rows = world.rows(n)
    _window = (n, rows, world.share(n))
    try:
        yield rows
    finally:
        _window = None


def loss_share() -> float:
    """The weight of this rank's mean loss in the batch's (1.0 outside a batch window)."""
    return 1.0 if _window is None else _window[2]


def take_rows(tree: Any, rows: slice) -> Any:
    """The rows ``rows`` of every tensor in a batch (tensors, dicts, lists of them)."""
    if isinstance(tree, torch.Tensor):
        return tree[rows]
    if isinstance(tree, dict):
        return {k: take_rows(v, rows) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return type(tree)(take_rows(v, rows) for v in tree)
    return tree


def _layout(x: torch.Tensor) -> torch.memory_format:
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) \
            and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


class RankDropout(nn.Dropout):
    """Dropout whose mask is drawn for the whole batch on every rank, each keeping its
    rows: the same draws, in the same order, as one process's ``F.dropout`` on the batch
    (CPU dropout fills ``empty_like(x)`` with Bernoulli draws, then scales)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _window is None or not self.training or self.p == 0:
            return F.dropout(x, self.p, self.training, self.inplace)
        n, rows, _ = _window
        noise = torch.empty((n, *x.shape[1:]), dtype=x.dtype, device=x.device,
                            memory_format=_layout(x))
        noise.bernoulli_(1 - self.p)
        if self.p < 1:
            noise.div_(1 - self.p)
        return x * noise[rows]


class _RankBatchNormFn(torch.autograd.Function):
    """Batch norm over the rows of every rank: the sums travel, the rows stay."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        dims = [d for d in range(x.dim()) if d != 1]
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x.float()
        count = torch.tensor([xf.numel() / xf.shape[1]], dtype=torch.float64)
        total = torch.cat([xf.sum(dims).double(), count])
        dist.all_reduce(total)
        n = total[-1]
        mean = (total[:-1] / n).float()
        centred = xf - mean.view(shape)
        sq = (centred * centred).sum(dims).double()
        dist.all_reduce(sq)
        var = (sq / n).float()
        invstd = torch.rsqrt(var + eps)
        xhat = centred * invstd.view(shape)
        ctx.save_for_backward(xhat, weight, invstd)
        ctx.n, ctx.dims, ctx.shape = float(n), dims, shape
        y = xhat * weight.view(shape) + bias.view(shape)
        return y.to(x.dtype), mean, var * (float(n) / max(float(n) - 1, 1.0))

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor, _m: Any, _v: Any) -> tuple[Any, ...]:
        xhat, weight, invstd = ctx.saved_tensors
        dims, shape, n = ctx.dims, ctx.shape, ctx.n
        g = dy.float()
        local = torch.stack([g.sum(dims), (g * xhat).sum(dims)])   # [2, C]
        both = local.double()
        dist.all_reduce(both)
        sum_g, sum_gx = both.float()
        dx = (weight * invstd).view(shape) / n * (
            n * g - sum_g.view(shape) - xhat * sum_gx.view(shape))
        return dx.to(dy.dtype), local[1], local[0], None


class RankBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics are those of the whole batch over all ranks;
    the same parameters, buffers and state-dict keys as the layer it replaces."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input (got {x.dim()}-D)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _window is None or not self.training or not self.track_running_stats:
            return super().forward(x)
        y, mean, unbiased = _RankBatchNormFn.apply(x, self.weight, self.bias, self.eps)
        with torch.no_grad():
            self.num_batches_tracked.add_(1)  # type: ignore[union-attr, operator]
            m = self.momentum if self.momentum is not None else \
                1.0 / float(self.num_batches_tracked)  # type: ignore[arg-type]
            self.running_mean.mul_(1 - m).add_(mean, alpha=m)  # type: ignore[union-attr]
            self.running_var.mul_(1 - m).add_(unbiased, alpha=m)  # type: ignore[union-attr]
        return y


def _swap(module: nn.Module, to_rank: bool) -> nn.Module:
    """The replacement of one layer (the same parameter and buffer objects), or itself."""
    norm = nn.modules.batchnorm._BatchNorm
    if to_rank and isinstance(module, norm) and not isinstance(module, RankBatchNorm) \
            and module.affine:
        new: nn.Module = RankBatchNorm(module.num_features, module.eps, module.momentum,
                                       module.affine, module.track_running_stats)
        new._original = type(module)  # the class to convert back to
    elif to_rank and type(module) is nn.Dropout:
        new = RankDropout(module.p, module.inplace)
    elif not to_rank and isinstance(module, RankBatchNorm):
        cls = getattr(module, "_original", nn.BatchNorm2d)
        new = cls(module.num_features, module.eps, module.momentum, module.affine,
                  module.track_running_stats)
    elif not to_rank and isinstance(module, RankDropout):
        new = nn.Dropout(module.p, module.inplace)
    else:
        return module
    new._parameters, new._buffers = module._parameters, module._buffers
    new.train(module.training)
    return new


def convert(model: nn.Module, to_rank: bool = True) -> None:
    """Replace the batch-norm and dropout layers of ``model`` in place by their rank-aware
    forms (``to_rank``) or back; parameters, buffers and state-dict keys stay the same."""
    for name, child in list(model.named_children()):
        convert(child, to_rank)
        new = _swap(child, to_rank)
        if new is not child:
            setattr(model, name, new)


class _Parallel(nn.parallel.DistributedDataParallel):
    """DDP that answers the wrapped model's own attributes (``loss``, ``metrics``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


def parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """The model wrapped for data-parallel training (gradients averaged over ranks)."""
    ids = [device.index or 0] if device.type == "cuda" else None
    return _Parallel(model, device_ids=ids, forward_sync_buffers=False)
