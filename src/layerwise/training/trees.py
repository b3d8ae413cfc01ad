"""Nested batches (tensors, dicts, lists): moving, and measuring them."""

from __future__ import annotations

from typing import Any

import torch

from layerwise.data.batching import InMemoryBatches, TensorData, Tree
from layerwise.data.shards import ShardedData
from layerwise.errors import ConfigError


def to_device(tree: Tree, device: torch.device, channels_last: bool) -> Tree:
    if isinstance(tree, torch.Tensor):
        if tree.device != device:
            tree = tree.to(device, non_blocking=True)
        if channels_last and tree.ndim == 4:
            tree = tree.contiguous(memory_format=torch.channels_last)
        return tree
    if isinstance(tree, dict):
        return {k: to_device(v, device, channels_last) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return type(tree)(to_device(v, device, channels_last) for v in tree)
    return tree


def contiguous(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous() for k, v in sd.items()}


def batch_len(targets: Tree, inputs: Tree) -> int:
    for tree in (targets, inputs):
        if isinstance(tree, torch.Tensor):
            return int(tree.shape[0])
        if isinstance(tree, dict) and tree:
            return batch_len(next(iter(tree.values())), None)
        if isinstance(tree, list | tuple) and tree:
            return batch_len(tree[0], None)
    return 0


def as_data(data: Any) -> TensorData | InMemoryBatches | ShardedData | torch.utils.data.Dataset:  # type: ignore[type-arg]
    """Accept TensorData, (inputs, targets) tuples, batches, streamed shards
    (:class:`~layerwise.data.shards.ShardedData`) or a torch Dataset."""
    if isinstance(data, TensorData | InMemoryBatches | ShardedData | torch.utils.data.Dataset):
        return data
    if isinstance(data, tuple | list) and len(data) == 2:
        return TensorData(data[0], data[1])
    raise ConfigError("training data must be (inputs, targets), a TensorData, a batches "
                      f"object or a torch Dataset; got {type(data).__name__}")
