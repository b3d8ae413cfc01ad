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

One process can also compute each step as N ranks would (``train.replicas: N``, see
:func:`emulate`): the layers that sum over the batch run once per rank's rows and the
sums meet in the order the all-reduce adds them, so 1 and N processes train bit-equal
weights.

Exactness has limits, stated in docs/decisions.md: dropout inside fused kernels (attention
dropout, dropout between stacked recurrent layers) draws per rank; the phased families (a
GAN), the generative families that sample noise in their forward pass, and reinforcement
learning do not train distributed.
"""

from __future__ import annotations

import atexit
import functools
import json
import operator
import os
import warnings
from collections.abc import Callable, Iterator
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
        atexit.register(_leave)
    return world


def _leave() -> None:
    """Leave the process group before the interpreter ends: a gloo group still alive at
    teardown can abort the process ("terminate called without an active exception"),
    which fails a run that had finished."""
    if dist.is_initialized():
        dist.destroy_process_group()


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


def _over_ranks(local: Callable[..., torch.Tensor], slices: list[slice] | None,
                *rows: torch.Tensor) -> list[torch.Tensor]:
    """``local`` of each rank's rows: this rank's alone, or, in one process computing the
    ranks (``slices``), every rank's in rank order."""
    if slices is None:
        return [local(*rows)]
    return [local(*(t[s] for t in rows)) for s in slices]


def _all_summed(parts: list[torch.Tensor], slices: list[slice] | None) -> torch.Tensor:
    """The sum over ranks: an all-reduce, or, in one process computing the ranks, their
    parts added in rank order (two parts add as gloo adds them)."""
    if slices is not None:
        return functools.reduce(operator.add, parts)
    out = parts[0]
    dist.all_reduce(out)
    return out


class _RankBatchNormFn(torch.autograd.Function):
    """Batch norm over the rows of every rank: the sums travel, the rows stay."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        dims = [d for d in range(x.dim()) if d != 1]
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x.float()

        def sums(v: torch.Tensor) -> torch.Tensor:
            count = torch.tensor([v.numel() / v.shape[1]], dtype=torch.float64)
            return torch.cat([v.sum(dims).double(), count])

        total = _all_summed(_over_ranks(sums, _slices, xf), _slices)
        n = total[-1]
        mean = (total[:-1] / n).float()
        centred = xf - mean.view(shape)
        sq = _all_summed(_over_ranks(lambda c: (c * c).sum(dims).double(), _slices, centred),
                         _slices)
        var = (sq / n).float()
        invstd = torch.rsqrt(var + eps)
        xhat = centred * invstd.view(shape)
        ctx.save_for_backward(xhat, weight, invstd)
        ctx.n, ctx.dims, ctx.shape, ctx.slices = float(n), dims, shape, _slices
        y = xhat * weight.view(shape) + bias.view(shape)
        return y.to(x.dtype), mean, var * (float(n) / max(float(n) - 1, 1.0))

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor, _m: Any, _v: Any) -> tuple[Any, ...]:
        xhat, weight, invstd = ctx.saved_tensors
        dims, shape, n = ctx.dims, ctx.shape, ctx.n
        g = dy.float()
        parts = _over_ranks(lambda gr, xr: torch.stack([gr.sum(dims), (gr * xr).sum(dims)]),
                            ctx.slices, g, xhat)   # [2, C] per rank
        # each rank's own sums are its parameter gradients (DDP adds them up)
        local = functools.reduce(operator.add, parts)
        sum_g, sum_gx = _all_summed([p.double() for p in parts], ctx.slices).float()
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


# ------------------------------------------------------------ the ranks in one process
_slices: list[slice] | None = None   # every rank's rows, while one process computes them
_size = 1                            # ... and how many ranks it computes
SLICED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
          nn.ConvTranspose3d, nn.Embedding, nn.LayerNorm, nn.GroupNorm)   # rows apart


@contextmanager
def replica_window(size: int, n: int) -> Iterator[list[slice]]:
    """While one process computes an ``n``-row batch as ``size`` ranks would: the rows of
    each rank (yielded), which the layers of :func:`emulate` compute apart."""
    global _window, _slices, _size
    slices = [s for s in (World(r, size, size).rows(n) for r in range(size))
              if s.stop > s.start]
    _window, _slices, _size = (n, slice(0, n), 1.0), slices, size
    try:
        yield slices
    finally:
        _window, _slices, _size = None, None, 1


def _by_rank(forward: Callable[..., Any]) -> Callable[..., Any]:
    """A layer's forward run once per rank's rows: its weight gradients are then each
    rank's own sums, added as DDP adds them."""
    def run(x: Any, *args: Any, **kwargs: Any) -> Any:
        if _slices is None or not isinstance(x, torch.Tensor) or x.dim() == 0 \
                or _window is None or x.shape[0] != _window[0]:
            return forward(x, *args, **kwargs)
        return torch.cat([forward(x[s], *args, **kwargs) for s in _slices])
    run.by_rank = True  # type: ignore[attr-defined]
    return run


def emulate(model: nn.Module, size: int) -> list[Any]:
    """Make one process compute each step of ``model`` as ``size`` ranks would: batch norm
    and dropout as :func:`convert` makes them, the layers with weights (:data:`SLICED`)
    once per rank's rows, and each gradient multiplied by 1/N as DDP multiplies it (the
    hooks returned). A parameter of another layer sums its gradient over the whole batch
    at once, which matches the ranks only up to float order: said in a warning."""
    convert(model)
    scale = 1.0 / size
    hooks = [p.register_hook(lambda g: g * scale) for p in model.parameters()
             if p.requires_grad]
    norm = nn.modules.batchnorm._BatchNorm
    apart = []
    for name, module in model.named_modules():
        if isinstance(module, SLICED):
            module.forward = _by_rank(module.forward)  # type: ignore[method-assign]
        elif not isinstance(module, norm) and any(
                p.requires_grad for p in module.parameters(recurse=False)):
            apart.append(name or type(module).__name__)
    if apart:
        warnings.warn(f"train.replicas: {size}: the parameters of {', '.join(apart)} sum "
                      "their gradients over the whole batch, so they match "
                      f"{size} processes up to float order, not bit for bit", stacklevel=2)
    return hooks


def unemulate(model: nn.Module, hooks: list[Any]) -> None:
    """Undo :func:`emulate` (the layers keep their parameters and keys)."""
    for hook in hooks:
        hook.remove()
    for module in model.modules():
        if getattr(module.__dict__.get("forward"), "by_rank", False):
            del module.__dict__["forward"]
    convert(model, to_rank=False)


def replica_loss(trainer: Any, inputs: Any, targets: Any) -> torch.Tensor:
    """The step's loss as the ranks make it: each rank's mean loss over its rows, weighted
    by its share, added in rank order (N times the batch's mean loss: DDP's 1/N is applied
    to the gradients, by the hooks of :func:`emulate`)."""
    n = _window[0] if _window is not None else 0
    model = trainer.forward_module
    outputs = model(inputs)
    parts = []
    for rows in _slices or ():
        loss = trainer.compute_loss(model, take_rows(outputs, rows), take_rows(targets, rows))
        share = (rows.stop - rows.start) * _size / n   # as World.share
        parts.append(loss * share)
    return functools.reduce(operator.add, parts)


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
