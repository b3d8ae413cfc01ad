"""Batches for training and evaluation.

The fast path (``InMemoryBatches``) keeps every tensor preloaded and makes a batch with one
index-select per tensor: no per-sample Python. ``LoaderBatches`` wraps a ``DataLoader`` for
data that must stream; both draw the same per-epoch order from ``(seed, epoch)``, so a run
can switch paths without changing its results, and a resumed run can skip to any batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

Tree = Any  # a Tensor, or a dict / tuple of Tensors


def take(tree: Tree, idx: torch.Tensor) -> Tree:
    """Index every tensor in a tree of tensors with the same row indices."""
    if isinstance(tree, torch.Tensor):
        return tree.index_select(0, idx)
    if isinstance(tree, dict):
        return {k: take(v, idx) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return type(tree)(take(v, idx) for v in tree)
    raise TypeError(f"cannot index a batch of type {type(tree).__name__}")


def nbytes(tree: Tree) -> int:
    if isinstance(tree, torch.Tensor):
        return tree.element_size() * tree.numel()
    if isinstance(tree, dict):
        return sum(nbytes(v) for v in tree.values())
    if isinstance(tree, list | tuple):
        return sum(nbytes(v) for v in tree)
    return 0


def first_len(tree: Tree) -> int:
    if isinstance(tree, torch.Tensor):
        return int(tree.shape[0])
    if isinstance(tree, dict):
        return first_len(next(iter(tree.values())))
    return first_len(tree[0])


@dataclass
class TensorData:
    """Encoded rows: ``inputs`` and ``targets`` are tensors or dicts of tensors."""

    inputs: Tree
    targets: Tree

    def __len__(self) -> int:
        return first_len(self.inputs)

    def subset(self, idx: torch.Tensor) -> TensorData:
        return TensorData(take(self.inputs, idx), take(self.targets, idx))


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The row order of one epoch: a function of (seed, epoch) alone."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + epoch) % (2**63))
    return torch.randperm(n, generator=g)


class InMemoryBatches:
    """Index-slices of preloaded tensors."""

    kind = "memory"

    def __init__(self, data: TensorData, batch_size: int, *, shuffle: bool, seed: int = 0,
                 drop_last: bool = False) -> None:
        self.data, self.batch_size, self.shuffle, self.seed = data, batch_size, shuffle, seed
        self.drop_last = drop_last and len(data) > batch_size
        self.n = len(data)

    def __len__(self) -> int:
        if self.drop_last:
            return self.n // self.batch_size
        return -(-self.n // self.batch_size)

    def _order(self, epoch: int) -> torch.Tensor:
        return epoch_order(self.n, self.seed, epoch) if self.shuffle else torch.arange(self.n)

    def epoch(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[Tree, Tree]]:
        order = self._order(epoch)
        bs = self.batch_size
        for b in range(start, len(self)):
            idx = order[b * bs: (b + 1) * bs]
            yield take(self.data.inputs, idx), take(self.data.targets, idx)


class _Rows(torch.utils.data.Dataset):  # type: ignore[type-arg]
    def __init__(self, data: TensorData) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[Tree, Tree]:
        idx = torch.tensor([i])
        return take(self.data.inputs, idx), take(self.data.targets, idx)


def cat(parts: list[Tree]) -> Tree:
    """Join nested batches (tensors, dicts, lists of them) along the batch dimension."""
    head = parts[0]
    if isinstance(head, torch.Tensor):
        return torch.cat(parts)
    if isinstance(head, dict):
        return {k: cat([p[k] for p in parts]) for k in head}
    return type(head)(cat([p[i] for p in parts]) for i in range(len(head)))


def _collate(items: list[tuple[Tree, Tree]]) -> tuple[Tree, Tree]:
    return cat([i[0] for i in items]), cat([i[1] for i in items])


def _default_collate(items: list[Any]) -> tuple[Tree, Tree]:
    inputs, targets = torch.utils.data.default_collate(items)
    return inputs, targets


class LoaderBatches(InMemoryBatches):
    """The same batches through a ``DataLoader`` (per-sample fetch + collate)."""

    kind = "loader"

    def __init__(self, data: TensorData | torch.utils.data.Dataset, batch_size: int, *,  # type: ignore[type-arg]
                 shuffle: bool, seed: int = 0, drop_last: bool = False,
                 num_workers: int = 0, pin_memory: bool = False) -> None:
        rows = data if isinstance(data, torch.utils.data.Dataset) else _Rows(data)
        self.rows = rows
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.n = len(rows)  # type: ignore[arg-type]
        self.drop_last = drop_last and self.n > batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory  # page-locked batches: non_blocking copies to a GPU

    def epoch(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[Tree, Tree]]:
        order = self._order(epoch).tolist()
        bs = self.batch_size
        batches = [order[b * bs: (b + 1) * bs] for b in range(start, len(self))]
        # our own rows come pre-batched (one-row tensors); a user's Dataset yields samples
        collate = _collate if isinstance(self.rows, _Rows) else _default_collate
        loader = torch.utils.data.DataLoader(self.rows, batch_sampler=batches,
                                             collate_fn=collate, num_workers=self.num_workers,
                                             pin_memory=self.pin_memory)
        yield from loader


def make_batches(data: TensorData, batch_size: int, *, kind: str, shuffle: bool, seed: int = 0,
                 drop_last: bool = False) -> InMemoryBatches:
    cls = LoaderBatches if kind == "loader" else InMemoryBatches
    return cls(data, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last)


# bytes of activations one inference batch may take at most. Sized for speed, not only to
# fit in memory: EfficientNet-Lite0 at 160² (~10 MiB per row by the probe; 6 rows here)
# scored a row in 16.9 ms at 8 rows, 26.3 at 26 and 46.9 at 106 (what 1 GiB allowed), one
# thread, Zen 4, while the Fashion CNN (~0.4 MiB per row; 167 rows here) was flat from 32
# rows up (docs/benchmarks.md, issue 16, session 15)
INFERENCE_BUDGET = 1 << 26
INFERENCE_BUDGET_CUDA = 1 << 30  # a GPU wants large batches; memory is its limit there
_PROBE_ROWS = 2


def _on_cuda(forward: Any) -> bool:
    params = forward.parameters() if isinstance(forward, torch.nn.Module) else iter(())
    first = next(params, None)
    return first is not None and first.device.type == "cuda"


def inference_rows(forward: Any, inputs: Tree, cap: int, budget: int | None = None) -> int:
    """How many rows one inference batch of ``forward`` may hold: ``cap``, or fewer where a
    batch would pass ``budget`` bytes of activations, judged by the largest output of any
    module on a 2-row pass, times four (its input, a kept residual and scratch live beside
    it). An EfficientNet at 192² keeps 3.5 MB per row in one layer: 2,048 rows would not
    fit in 24 GiB, and batches past the caches run slower per row (``INFERENCE_BUDGET``)."""
    n = first_len(inputs)
    if n <= _PROBE_ROWS:
        return max(1, min(cap, n))
    largest = 0

    def seen(module: Any, args: Any, out: Any) -> None:
        nonlocal largest
        largest = max(largest, nbytes(out))

    training = isinstance(forward, torch.nn.Module) and forward.training
    if training:
        forward.eval()   # the probe must not move batch-norm statistics
    handle = torch.nn.modules.module.register_module_forward_hook(seen)
    try:
        with torch.inference_mode():
            forward(take(inputs, torch.arange(_PROBE_ROWS)))
    finally:
        handle.remove()
        if training:
            forward.train()
    per_row = 4 * largest / _PROBE_ROWS
    if budget is None:
        budget = INFERENCE_BUDGET_CUDA if _on_cuda(forward) else INFERENCE_BUDGET
    return max(1, min(cap, int(budget // per_row) if per_row else cap))
