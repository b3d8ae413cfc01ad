"""Encoded rows in safetensors shards on disk, and the bounded-memory loader over them.

The streaming path (layerwise.data.streaming) encodes a data set once into shards of
``shard_rows`` rows each (``{split}-{shard}.safetensors`` plus ``manifest.json``, written
last). :class:`ShardedData` is one split of such a cache; :class:`StreamBatches` walks it
in batches for the Trainer.

Order. An epoch's row order is a pure function of ``(seed, epoch)``: the shards in a seeded
permutation, and the rows of each shard in a seeded permutation of their own. Global batch
``b`` is rows ``[b*B, (b+1)*B)`` of that order, so a run resumed at batch ``k`` of an epoch
draws exactly the batches an uninterrupted run draws from ``k`` on. The training rows were
dealt to the shards in a seeded random order when the cache was written, so every shard is
a random sample of the training split (rows of one class or one source file do not cluster
in one shard).

Memory. Batches are made by worker processes (``data.stream.workers``) a few batches
ahead (``prefetch``); each worker holds at most two decoded shards. Peak memory is about
``(workers + 1) * 2 * shard`` plus the prefetched batches, whatever the split's size.
"""

from __future__ import annotations

import bisect
import json
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from layerwise.data.batching import InMemoryBatches, TensorData, Tree, cat, nbytes, take
from layerwise.errors import ArtifactError, DataError
from layerwise.files import load_safetensors, save_safetensors

MANIFEST = "manifest.json"
FORMAT = 1


# --------------------------------------------------------------- flattening a TensorData
def flatten(data: TensorData) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors named ``t0, t1, …`` and the layout that puts them back in their trees."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(tree: Tree) -> Any:
        if isinstance(tree, torch.Tensor):
            name = f"t{len(tensors)}"
            tensors[name] = tree.contiguous()
            return name
        if isinstance(tree, dict):
            return {"dict": {k: walk(v) for k, v in tree.items()}}
        return {"list": [walk(v) for v in tree]}

    return tensors, {"inputs": walk(data.inputs), "targets": walk(data.targets)}


def unflatten(tensors: dict[str, torch.Tensor], layout: dict[str, Any]) -> TensorData:
    def walk(spec: Any) -> Tree:
        if isinstance(spec, str):
            return tensors[spec]
        if "dict" in spec:
            return {k: walk(v) for k, v in spec["dict"].items()}
        return tuple(walk(v) for v in spec["list"])

    return TensorData(walk(layout["inputs"]), walk(layout["targets"]))


def _target_names(layout: dict[str, Any]) -> list[str]:
    out: list[str] = []

    def walk(spec: Any) -> None:
        if isinstance(spec, str):
            out.append(spec)
        elif "dict" in spec:
            for v in spec["dict"].values():
                walk(v)
        else:
            for v in spec["list"]:
                walk(v)

    walk(layout["targets"])
    return out


def _rows(tree: Tree, a: int, z: int) -> Tree:
    """Rows ``[a, z)`` of every tensor in a tree (views, not copies)."""
    if isinstance(tree, torch.Tensor):
        return tree[a:z]
    if isinstance(tree, dict):
        return {k: _rows(v, a, z) for k, v in tree.items()}
    return type(tree)(_rows(v, a, z) for v in tree)


def bound_allocator() -> None:
    """Make freed buffers go back to the system while data streams or a server answers
    batches (Linux, glibc): a fixed mmap threshold (glibc otherwise raises it after the
    first large free, and later batch-sized buffers stay in a heap that only grows) and
    Arrow's system allocator (its default pool keeps freed pages for reuse)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 256 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass
    try:
        import pyarrow as pa

        pa.set_memory_pool(pa.system_memory_pool())
    except ImportError:
        pass


def give_back() -> None:
    """Return freed heap pages to the system (glibc's malloc_trim; a no-op elsewhere)."""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


# ------------------------------------------------------------------------------- writer
class ShardWriter:
    """Rows dealt to shards by number (``add``), buffered in memory up to ``buffer_bytes``
    and spilled as pieces; ``finish`` joins each shard's pieces into its file.

    Memory stays under ``buffer_bytes`` plus one shard, however many rows are written."""

    def __init__(self, root: Path, buffer_bytes: int) -> None:
        self.root, self.buffer_bytes = root, buffer_bytes
        self.pieces = root / "pieces"
        self.pieces.mkdir(parents=True, exist_ok=True)
        self.buffers: dict[tuple[str, int], list[TensorData]] = {}
        self.held = 0
        self.spilled: dict[tuple[str, int], int] = {}   # pieces written per shard
        self.layout: dict[str, Any] | None = None

    def add(self, split: str, shards: np.ndarray, data: TensorData) -> None:
        """Rows of ``data`` into the shards numbered ``shards`` (one number per row).

        The rows are sorted by shard in one copy and each shard keeps a slice of it: a few
        large allocations, which go back to the system when spilled, instead of many small
        ones that fragment the heap."""
        order = np.argsort(shards, kind="stable")
        ranked = data.subset(torch.from_numpy(order))
        numbers, starts = np.unique(shards[order], return_index=True)
        ends = [*starts[1:].tolist(), len(order)]
        for s, a, z in zip(numbers.tolist(), starts.tolist(), ends, strict=True):
            part = TensorData(_rows(ranked.inputs, a, z), _rows(ranked.targets, a, z))
            self.buffers.setdefault((split, int(s)), []).append(part)
        self.held += nbytes(ranked.inputs) + nbytes(ranked.targets)
        if self.held > self.buffer_bytes:
            self.spill()

    def spill(self) -> None:
        for key, parts in self.buffers.items():
            joined = TensorData(cat([p.inputs for p in parts]), cat([p.targets for p in parts]))
            tensors, layout = flatten(joined)
            self.layout = self.layout or layout
            n = self.spilled.get(key, 0)
            save_safetensors(self.pieces / f"{key[0]}-{key[1]:06d}-{n:06d}.safetensors", tensors)
            self.spilled[key] = n + 1
        self.buffers, self.held = {}, 0
        give_back()

    def finish(self) -> dict[str, Any]:
        """Join the pieces into shards; the splits' part of the manifest."""
        self.spill()
        splits: dict[str, Any] = {}
        for split, shard in sorted(self.spilled):
            files = [self.pieces / f"{split}-{shard:06d}-{i:06d}.safetensors"
                     for i in range(self.spilled[(split, shard)])]
            loaded = [load_safetensors(f) for f in files]
            tensors = {k: torch.cat([t[k] for t in loaded]) for k in loaded[0]}
            name = f"{split}-{shard:06d}.safetensors"
            save_safetensors(self.root / name, tensors)
            for f in files:
                f.unlink()
            rows = int(next(iter(tensors.values())).shape[0])
            info = splits.setdefault(split, {"rows": 0, "bytes": 0, "shards": []})
            info["rows"] += rows
            info["bytes"] += sum(t.element_size() * t.numel() for t in tensors.values())
            info["shards"].append({"file": name, "rows": rows})
        self.pieces.rmdir()
        return {"splits": splits, "layout": self.layout}


# ------------------------------------------------------------------------------ reading
class ShardedData:
    """One split of a shard cache: its length, its shards, rows by index, the loader's
    settings (``workers``, ``prefetch``) and ``identity`` (what a checkpoint records)."""

    def __init__(self, root: Path, split: str, manifest: dict[str, Any], *,
                 workers: int = 1, prefetch: int = 2) -> None:
        info = manifest["splits"][split]
        self.root, self.split, self.layout = Path(root), split, manifest["layout"]
        self.files = [s["file"] for s in info["shards"]]
        self.sizes = [int(s["rows"]) for s in info["shards"]]
        self.n, self.bytes = int(info["rows"]), int(info["bytes"])
        self.workers, self.prefetch = workers, prefetch
        self.identity = {"key": manifest["key"], "split": split, "rows": self.n,
                         "shards": len(self.files)}

    def __len__(self) -> int:
        return self.n

    @property
    def nbytes(self) -> int:
        return self.bytes

    def shard(self, i: int) -> TensorData:
        path = self.root / self.files[i]
        try:
            tensors = load_safetensors(path)
        except (ArtifactError, FileNotFoundError) as e:
            raise DataError(f"{path}: the streaming cache is damaged ({e}); delete "
                            f"{self.root} to rebuild it") from None
        return unflatten(tensors, self.layout)

    def chunks(self) -> Iterator[TensorData]:
        """Every shard in order (evaluation over the whole split, one shard in memory)."""
        for i in range(len(self.files)):
            yield self.shard(i)

    @property
    def targets(self) -> Tree:
        """The targets of every row, in order (read shard by shard; inputs stay on disk)."""
        return cat([c.targets for c in self.chunks()])

    def subset(self, idx: torch.Tensor) -> TensorData:
        """Rows ``idx`` (positions in shard order) as an in-memory TensorData."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        starts = np.cumsum([0, *self.sizes])
        which = np.searchsorted(starts, idx.numpy(), side="right") - 1
        parts, where = [], []
        for s in np.unique(which).tolist():
            mine = np.flatnonzero(which == s)
            parts.append(self.shard(s).subset(idx[mine] - int(starts[s])))
            where.append(mine)
        joined = TensorData(cat([p.inputs for p in parts]), cat([p.targets for p in parts]))
        back = torch.from_numpy(np.argsort(np.concatenate(where), kind="stable"))
        return joined.subset(back)


def read_manifest(root: Path) -> dict[str, Any] | None:
    """A complete cache's manifest (the file is written last); None when there is none."""
    path = root / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None
    return manifest if manifest.get("format") == FORMAT else None


# ------------------------------------------------------------------------------- order
def _generator(seed: int, epoch: int, shard: int = -1) -> torch.Generator:
    return torch.Generator().manual_seed(
        ((seed * 1_000_003 + epoch) * 1_000_033 + shard + 1) % (2**63))


class EpochPlan:
    """Where each row of one epoch's order lives: shard order, and row order per shard."""

    def __init__(self, sizes: list[int], seed: int, epoch: int, shuffle: bool) -> None:
        self.sizes, self.seed, self.epoch, self.shuffle = sizes, seed, epoch, shuffle
        k = len(sizes)
        self.order = torch.randperm(k, generator=_generator(seed, epoch)).tolist() \
            if shuffle else list(range(k))
        self.starts = np.cumsum([0] + [sizes[s] for s in self.order]).tolist()

    def rows(self, shard: int) -> torch.Tensor:
        n = self.sizes[shard]
        return torch.randperm(n, generator=_generator(self.seed, self.epoch, shard)) \
            if self.shuffle else torch.arange(n)

    def pieces(self, lo: int, hi: int) -> list[tuple[int, int, int]]:
        """``(shard, first, end)`` spans (positions in the shard's own order) of rows
        ``[lo, hi)`` of the epoch."""
        out = []
        i = bisect.bisect_right(self.starts, lo) - 1
        while lo < hi:
            start, end = self.starts[i], self.starts[i + 1]
            stop = min(hi, end)
            out.append((self.order[i], lo - start, stop - start))
            lo, i = stop, i + 1
        return out


class _EpochBatches(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Item ``b``: global batch ``b`` of one epoch (a worker keeps two shards decoded)."""

    def __init__(self, data: ShardedData, plan: EpochPlan, batch_size: int) -> None:
        self.data, self.plan, self.batch_size = data, plan, batch_size
        self.cache: OrderedDict[int, tuple[TensorData, torch.Tensor]] = OrderedDict()

    def __len__(self) -> int:
        return -(-self.data.n // self.batch_size)

    def _shard(self, s: int) -> tuple[TensorData, torch.Tensor]:
        if s not in self.cache:
            self.cache[s] = (self.data.shard(s), self.plan.rows(s))
            while len(self.cache) > 2:
                self.cache.popitem(last=False)
        return self.cache[s]

    def __getitem__(self, b: int) -> tuple[Tree, Tree]:
        lo = b * self.batch_size
        parts = []
        for s, a, z in self.plan.pieces(lo, min(self.data.n, lo + self.batch_size)):
            rows, order = self._shard(s)
            idx = order[a:z]
            parts.append((take(rows.inputs, idx), take(rows.targets, idx)))
        if len(parts) == 1:
            return parts[0]
        return cat([p[0] for p in parts]), cat([p[1] for p in parts])


def _same(batch: Any) -> Any:
    return batch


class StreamBatches(InMemoryBatches):
    """Batches of a :class:`ShardedData` through worker processes, in the order of
    :class:`EpochPlan`; ``epoch(e, start=k)`` begins at global batch ``k``."""

    kind = "stream"

    def __init__(self, data: ShardedData, batch_size: int, *, shuffle: bool, seed: int = 0,
                 drop_last: bool = False, pin_memory: bool = False) -> None:
        self.data, self.batch_size, self.shuffle, self.seed = data, batch_size, shuffle, seed
        self.n = len(data)
        self.drop_last = drop_last and self.n > batch_size
        self.pin_memory = pin_memory

    def epoch(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[Tree, Tree]]:
        plan = EpochPlan(self.data.sizes, self.seed, epoch, self.shuffle)
        items = _EpochBatches(self.data, plan, self.batch_size)
        workers = self.data.workers
        # the loader's own seed comes from this generator, not the global one: creating a
        # loader (as a resumed run does mid-epoch) must not move the training RNG
        loader = torch.utils.data.DataLoader(
            items, batch_size=None, sampler=range(start, len(self)), collate_fn=_same,
            num_workers=workers, prefetch_factor=self.data.prefetch if workers else None,
            pin_memory=self.pin_memory, generator=torch.Generator().manual_seed(self.seed))
        yield from loader
