"""Data larger than memory: the path choice, two bounded passes, and the shard cache.

**The path.** :func:`choose_path` estimates the encoded size of the data (the rows, counted
cheaply, times the encoded bytes of a probe of the first rows) and compares it with
``data.memory_budget`` (a quarter of RAM by default). Data that fits takes
:func:`layerwise.data.build.build`, unchanged; larger data streams (``data.stream.mode``
forces either path).

**Streaming** reads the sources chunk by chunk (layerwise.data.chunks) twice:

1. *scan*: every row is checked as the in-memory path checks it (a bad row names its file,
   row and column, or is skipped under ``skip_bad_rows``); kept are the row count, a
   content hash, the labels that stratify the split (one small integer per row) and a
   seeded reservoir sample of the rows (Algorithm R, ``data.stream.fit_rows`` rows at most,
   bounded by the budget too).
2. The split is the in-memory path's own function on the same row numbers and labels, so
   the train / validation / test rows are those the in-memory path would choose. The
   encoders are fitted on the sample's training rows (all of them when the sample holds
   the whole source): scalers, image statistics and input vocabularies from the sample;
   output classes from every training row's label, so that no class is missed.
3. *encode*: each chunk is encoded and dealt to shards (training rows in a seeded random
   order, see layerwise.data.shards), written once into a cache keyed by the content hash,
   the features, the split and the seed. A later run on the same files (same sizes and
   modification times) opens the cache without reading the data again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from layerwise.config import GENERATIVE_FAMILIES, Config
from layerwise.config.streaming import budget_bytes
from layerwise.data import chunks, shards
from layerwise.data.batching import nbytes
from layerwise.data.build import Schema, _split_at_random, build
from layerwise.data.dataset import Dataset
from layerwise.data.features import CategoryEncoder
from layerwise.data.sources import BadRows, infer_format
from layerwise.data.table import Table
from layerwise.errors import ConfigError, DataError
from layerwise.files import load_safetensors, save_safetensors, write_text

PROBE_ROWS = 256
SPLITS = ("train", "validation", "test")
VERSION = 1  # of the cache's layout; a change makes new keys


@dataclass
class Sources:
    """The files of each part (``all``, and ``validation`` / ``test`` when given)."""

    parts: dict[str, tuple[str, list[Path]]]

    @classmethod
    def of(cls, cfg: Config) -> Sources:
        d = cfg.data
        parts = {"all": chunks.source_files(d.path, d.format, d.looked_in("path"))}  # type: ignore[arg-type]
        for key, path in (("validation", d.validation_path), ("test", d.test_path)):
            if path:
                parts[key] = chunks.source_files(path, d.format, d.looked_in(f"{key}_path"))
        return cls(parts)

    def rows(self) -> int:
        return sum(chunks.count_rows(kind, files) for kind, files in self.parts.values())


@dataclass
class Estimate:
    rows: int
    row_bytes: float      # encoded bytes per row (inputs and targets)
    raw_row_bytes: float  # parsed bytes per row (before encoding)

    @property
    def total(self) -> int:
        return int(self.rows * self.row_bytes)


def _columns(schema: Schema) -> list[str] | None:
    """The source columns the features read (None: every column, for a feature that reads
    several)."""
    encs = schema.inputs + schema.outputs
    if any(hasattr(e, "read") for e in encs):
        return None
    return list(dict.fromkeys(getattr(e, "column", e.name) for e in encs))


def _raw_bytes(values: dict[str, np.ndarray]) -> int:
    total = 0
    for v in values.values():
        total += v.nbytes if v.dtype != object else 64 * v.size + sum(
            len(str(x)) for x in v.ravel()[:256]) * max(1, v.size // 256)
    return total


def estimate(cfg: Config, srcs: Sources) -> Estimate:
    """Rows times the encoded (and parsed) bytes of a probe of the first rows."""
    kind, files = srcs.parts["all"]
    schema = Schema.from_config(cfg)
    bad = BadRows(True, 10**12)
    first = next(chunks.iter_chunks(kind, files, PROBE_ROWS, bad, _columns(schema),
                                    cfg.data.delimiter), None)
    if first is None:
        raise DataError(f"{files[0]}: no rows found")
    values, table = schema.parse(first, targets=True, bad=bad)
    n = max(1, len(table))
    raw = _raw_bytes(values) / n
    try:
        schema.fit(values)
        data = schema.encode(values)
        row = (nbytes(data.inputs) + nbytes(data.targets)) / n
    except (DataError, ValueError):  # e.g. one class in the first rows: judge by the parse
        row = raw
    return Estimate(srcs.rows(), max(row, 1.0), max(raw, 1.0))


def choose_path(cfg: Config) -> tuple[str, str, Estimate | None]:
    """``("memory" | "stream", why, estimate)`` for a config."""
    d = cfg.data
    mode, budget = d.stream.mode, budget_bytes(d.memory_budget)
    if d.dataset:
        if mode == "stream":
            raise ConfigError("data.stream.mode: stream reads files (data.path); a catalogue "
                              "data set (data.dataset) is loaded in memory")
        return "memory", "a catalogue data set", None
    if mode == "memory":
        return "memory", "data.stream.mode: memory", None
    p = Path(d.path or "")
    if mode == "auto" and p.exists() and infer_format(p, d.format) not in chunks.STREAMED:
        return "memory", f"format {infer_format(p, d.format)} is read whole", None  # npz, audio
    try:
        est = estimate(cfg, Sources.of(cfg))
    except DataError:  # the first rows do not read: judge by the files' size, and leave
        if mode == "stream" or _disk_bytes(cfg) > budget // 4:  # the message to the path
            return "stream", "the files are large and their first rows do not read", None
        return "memory", "the first rows do not read; the files are small", None
    size = f"{est.total / 2**20:.1f} MiB encoded ({est.rows} rows)"
    if mode == "stream":
        return "stream", f"data.stream.mode: stream; {size}", est
    if est.total <= budget:
        return "memory", f"{size} fits the {budget / 2**20:.0f} MiB budget", est
    return "stream", f"{size} exceeds the {budget / 2**20:.0f} MiB budget", est


def _disk_bytes(cfg: Config) -> int:
    """The size on disk of the data's files (0 for what does not exist)."""
    d = cfg.data
    total = 0
    for path in (d.path, d.validation_path, d.test_path):
        try:
            files = chunks.source_files(path, d.format)[1] if path else []
        except DataError:
            files = []
        for f in files:
            total += sum(q.stat().st_size for q in f.rglob("*") if q.is_file()) \
                if f.is_dir() else f.stat().st_size
    return total


def build_for_training(cfg: Config) -> Dataset:
    """The in-memory Dataset when the data fits the budget, else the streamed one."""
    path, why, est = choose_path(cfg)
    if path == "memory":
        return build(cfg)
    return build_streaming(cfg, why, est)


def _refuse(cfg: Config, schema: Schema) -> None:
    sp = cfg.data.split
    for what, bad in (("data.split.folds", sp.folds), ("data.split.column", sp.column),
                      ("data.split.labelled", getattr(sp, "labelled", None)),
                      ("a time-series input", schema.series),
                      ("model.init_from", getattr(cfg.model, "init_from", None)),
                      (f"the {cfg.model.family} family",
                       cfg.model.family in GENERATIVE_FAMILIES)):
        if bad:
            budget = budget_bytes(cfg.data.memory_budget) / 2**20
            raise ConfigError(f"{what} needs the data in memory, and it does not fit the "
                              f"budget ({budget:.0f} MiB): raise data.memory_budget or use "
                              "fewer rows")


# ------------------------------------------------------------------------------- scan
class Reservoir:
    """A seeded uniform sample of at most ``cap`` rows of a stream (Algorithm R)."""

    def __init__(self, cap: int, seed: int) -> None:
        self.cap, self.rng, self.seen = cap, np.random.default_rng(seed), 0
        self.values: dict[str, np.ndarray] | None = None
        self.ids = np.zeros(cap, dtype=np.int64)

    def add(self, values: dict[str, np.ndarray]) -> None:
        k = len(next(iter(values.values())))
        t = np.arange(self.seen, self.seen + k)
        slot = np.where(t < self.cap, t, self.rng.integers(0, t + 1))
        rows = np.flatnonzero(slot < self.cap)
        slot = slot[rows]
        _, last = np.unique(slot[::-1], return_index=True)  # a slot drawn twice: the later
        keep = np.sort(len(slot) - 1 - last)
        rows, slot = rows[keep], slot[keep]
        if self.values is None:
            self.values = {n: np.empty((self.cap, *v.shape[1:]), dtype=v.dtype)
                           for n, v in values.items()}
        for n, v in values.items():
            self.values[n][slot] = v[rows]
        self.ids[slot] = t[rows]
        self.seen += k

    def rows(self, keep: np.ndarray) -> dict[str, np.ndarray]:
        """The sampled rows whose stream position passes ``keep`` (a mask over positions),
        in stream order."""
        m = min(self.seen, self.cap)
        ids = self.ids[:m]
        sel = np.flatnonzero(keep[ids])
        sel = sel[np.argsort(ids[sel], kind="stable")]
        return {n: v[:m][sel] for n, v in (self.values or {}).items()}


class Labels:
    """One output's label per row as a small integer, numbered in sorted order of the
    labels' text (so that a stratified split sees the classes as the in-memory path does)."""

    def __init__(self) -> None:
        self.codes: dict[str, list[np.ndarray]] = {}
        self.index: dict[str, int] = {}
        self.reps: list[Any] = []

    def add(self, part: str, values: np.ndarray) -> None:
        out = np.empty(len(values), dtype=np.int32)
        for i, v in enumerate(values):
            s = str(v)
            if s not in self.index:
                self.index[s] = len(self.reps)
                self.reps.append(v)
            out[i] = self.index[s]
        self.codes.setdefault(part, []).append(out)

    def finish(self) -> None:
        names = sorted(self.index)
        rank = np.empty(len(names), dtype=np.int32)
        for r, s in enumerate(names):
            rank[self.index[s]] = r
        self.reps = [self.reps[self.index[s]] for s in names]
        self.index = {s: r for r, s in enumerate(names)}
        self.joined = {p: rank[np.concatenate(c)] if c else np.zeros(0, np.int32)
                       for p, c in self.codes.items()}

    def of(self, part: str) -> np.ndarray:
        return self.joined.get(part, np.zeros(0, np.int32))


@dataclass
class Scan:
    rows: dict[str, int] = field(default_factory=dict)
    labels: dict[str, Labels] = field(default_factory=dict)
    hashes: dict[str, Any] = field(default_factory=dict)
    sample: Reservoir | None = None

    def digest(self) -> str:
        h = hashlib.sha256()
        for key in sorted(self.hashes):
            h.update(f"{key}:{self.hashes[key].hexdigest()};".encode())
        return h.hexdigest()[:16]

    def hash(self, part: str, values: dict[str, np.ndarray]) -> None:
        for name, v in values.items():
            key = f"{part}/{name}/{v.dtype}/{v.shape[1:]}"
            h = self.hashes.setdefault(key, hashlib.sha256())
            h.update(np.ascontiguousarray(v).tobytes() if v.dtype != object
                     else "".join(f"{x}\x1f" for x in v).encode())


def _parsed(cfg: Config, schema: Schema, kind: str, files: list[Path], rows: int,
            bad: BadRows) -> Iterator[tuple[dict[str, np.ndarray], Table]]:
    for table in chunks.iter_chunks(kind, files, rows, bad, _columns(schema),
                                    cfg.data.delimiter):
        values, table = schema.parse(table, targets=True, bad=bad)
        if len(table):
            yield values, table


def scan(cfg: Config, schema: Schema, srcs: Sources, chunk_rows: int, cap: int,
         bad: BadRows) -> Scan:
    """Pass 1: check every row; count, hash, keep the labels and the reservoir sample."""
    out = Scan(sample=Reservoir(cap, cfg.seed))
    label_encs = [e for e in schema.outputs if e.kind in ("category", "binary")]
    for e in label_encs:
        out.labels[e.name] = Labels()
    for part, (kind, files) in srcs.parts.items():
        out.rows[part] = 0
        for values, _ in _parsed(cfg, schema, kind, files, chunk_rows, bad):
            out.rows[part] += len(next(iter(values.values())))
            out.hash(part, values)
            for e in label_encs:
                out.labels[e.name].add(part, values[e.name])
            if part == "all":
                out.sample.add(values)  # type: ignore[union-attr]
    for lab in out.labels.values():
        lab.finish()
    return out


# ------------------------------------------------------------------------------ split
def split_rows(cfg: Config, schema: Schema, sc: Scan) -> dict[str, tuple[str, np.ndarray]]:
    """Each split's part and row numbers in it: the in-memory path's split function."""
    data = cfg.data
    seed = data.split.seed if data.split.seed is not None else cfg.seed
    parsed = {p: {"__i": np.arange(n)} for p, n in sc.rows.items()}
    first = next((e.name for e in schema.outputs if e.kind in ("category", "binary")), None)

    def labels(values: dict[str, np.ndarray]) -> np.ndarray | None:
        if not data.split.stratify or first is None:
            return None
        return sc.labels[first].of("all")[values["__i"]]

    splits = _split_at_random(parsed, data, labels, seed)
    out = {s: (s if s in parsed else "all", v["__i"]) for s, v in splits.items()}
    if not len(out["train"][1]):
        raise DataError("the training split is empty; check data.split")
    return out


def fit(schema: Schema, sc: Scan, splits: dict[str, tuple[str, np.ndarray]]
        ) -> dict[str, np.ndarray]:
    """Fit the encoders on the sample's training rows (output classes on every training
    row's label); returns that sample (raw values)."""
    train = np.zeros(sc.rows["all"], dtype=bool)
    train[splits["train"][1]] = True
    sample = sc.sample.rows(train)  # type: ignore[union-attr]
    if not len(next(iter(sample.values()))):
        raise DataError("the sample for fitting the encoders holds no training rows; "
                        "raise data.stream.fit_rows")
    for enc in schema.inputs + schema.outputs:
        if isinstance(enc, CategoryEncoder) and enc.output:
            lab = sc.labels[enc.name]
            seen = np.unique(lab.of("all")[splits["train"][1]])
            enc.fit(np.array([lab.reps[i] for i in seen] + [None], dtype=object)[:-1])
        else:
            enc.fit(sample[enc.name])
    return sample


# ------------------------------------------------------------------------------ encode
@dataclass
class Sizes:
    """Row counts derived from the budget and the probe's bytes per row."""

    chunk: int    # rows read and parsed at a time
    shard: int    # rows per encoded shard
    sample: int   # reservoir rows for fitting the encoders
    buffer: int   # bytes of encoded rows held before spilling to disk

    @classmethod
    def of(cls, cfg: Config, est: Estimate) -> Sizes:
        budget, st = budget_bytes(cfg.data.memory_budget), cfg.data.stream
        widest = max(est.row_bytes, est.raw_row_bytes)
        # a chunk is held about four times over while it is parsed and encoded (raw,
        # parsed, encoded, the encoder's temporaries): 1/32 of the budget each
        chunk = int(min(65536, max(64, budget // 32 // widest)))
        shard = st.shard_rows or int(min(1_000_000, max(64, budget // 16 // est.row_bytes)))
        sample = int(min(st.fit_rows, max(256, budget // 8 // widest)))
        return cls(chunk, shard, sample, budget // 8)


def _dealt(splits: dict[str, tuple[str, np.ndarray]], sizes: Sizes, seed: int,
           rows: dict[str, int]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per part: each row's split (0, 1, 2; -1 for none) and its shard number. Training
    rows are dealt to shards in a seeded random order; the others in order."""
    out = {p: (np.full(k, -1, dtype=np.int8), np.zeros(k, dtype=np.int64))
           for p, k in rows.items()}
    for code, s in enumerate(SPLITS):
        if s not in splits:
            continue
        p, idx = splits[s]
        pos = np.arange(len(idx))
        if s == "train":
            pos = np.random.default_rng(seed).permutation(len(idx))
        out[p][0][idx] = code
        out[p][1][idx] = pos // sizes.shard
    return out


def encode(cfg: Config, schema: Schema, srcs: Sources, splits: dict[str, tuple[str, np.ndarray]],
           sizes: Sizes, root: Path, expected: dict[str, int]) -> dict[str, Any]:
    """Pass 2: parse again, encode chunk by chunk, deal the rows to shards under ``root``."""
    d = cfg.data
    seed = d.split.seed if d.split.seed is not None else cfg.seed
    dealt = _dealt(splits, sizes, seed, expected)
    writer = shards.ShardWriter(root, sizes.buffer)
    quiet = BadRows(d.skip_bad_rows, 10**12)  # the rows the scan skipped, skipped again
    for part, (kind, files) in srcs.parts.items():
        code, shard_of = dealt.get(part, (np.zeros(0, np.int8), np.zeros(0, np.int64)))
        t = 0
        for values, _ in _parsed(cfg, schema, kind, files, sizes.chunk, quiet):
            k = len(next(iter(values.values())))
            if t + k > expected[part]:
                break
            rows = schema.encode(values)
            c, sh = code[t:t + k], shard_of[t:t + k]
            for i, s in enumerate(SPLITS):
                mine = np.flatnonzero(c == i)
                if len(mine):
                    writer.add(s, sh[mine], rows.subset(torch.from_numpy(mine)))
            t += k
        if t != expected[part]:
            raise DataError(f"{files[0]}: the source changed while it was read ({expected[part]} "
                            f"rows, then {t}); run again")
    return writer.finish()


# ------------------------------------------------------------------------------- cache
def _key(cfg: Config, what: Any, sizes: Sizes) -> str:
    d = cfg.data
    spec = {"version": VERSION, "what": what, "inputs": [f.model_dump(mode="json") for f in
                                                           cfg.inputs],
            "outputs": [f.model_dump(mode="json") for f in cfg.outputs],
            "split": d.split.model_dump(mode="json"), "seed": cfg.seed, "shard": sizes.shard,
            "skip_bad_rows": d.skip_bad_rows, "max_bad_rows": d.max_bad_rows,
            "limit": d.limit, "fit_rows": sizes.sample}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()
                          ).hexdigest()[:20]


class _Lock:
    """An exclusive lock on a file (processes of one run build a cache once)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> _Lock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.f = self.path.open("a")
        fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: Any) -> None:
        import fcntl

        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


def _sample_file(root: Path) -> Path:
    return root / "sample.safetensors"


def _save_sample(root: Path, schema: Schema, sample: dict[str, np.ndarray]) -> None:
    """The numeric inputs of the fitting sample (drift monitoring compares against them)."""
    cols = {e.name: torch.from_numpy(np.asarray(sample[e.name], dtype=np.float64))
            for e in schema.inputs if e.kind == "numeric"}
    if cols:
        save_safetensors(_sample_file(root), cols)


def _load_sample(root: Path) -> dict[str, np.ndarray]:
    f = _sample_file(root)
    return {k: v.numpy() for k, v in load_safetensors(f).items()} if f.is_file() else {}


def _create(cfg: Config, schema: Schema, srcs: Sources, sizes: Sizes, base: Path,
            index: Path) -> tuple[Path, dict[str, Any]]:
    """Scan, split, fit and encode into a new cache folder (or reuse one with the same
    content key); records the file stats' key in ``index``."""
    d = cfg.data
    bad = BadRows(d.skip_bad_rows, d.max_bad_rows)
    sc = scan(cfg, schema, srcs, sizes.chunk, sizes.sample, bad)
    key = _key(cfg, sc.digest(), sizes)
    root = base / key
    manifest = shards.read_manifest(root)
    if manifest is None:
        splits = split_rows(cfg, schema, sc)
        sample = fit(schema, sc, splits)
        if root.exists():
            shutil.rmtree(root)  # an encoding that never finished
        tmp = base / f".{key}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        written = encode(cfg, schema, srcs, splits, sizes, tmp, sc.rows)
        _save_sample(tmp, schema, sample)
        manifest = {"format": shards.FORMAT, "key": key, **written,
                    "schema": schema.state(), "reference": schema.reference(sample),
                    "data_hash": sc.digest(), "skipped_bad_rows": bad.count,
                    "sizes": sizes.__dict__, "sample_rows": len(next(iter(sample.values())))}
        text = json.dumps(manifest, default=str)
        write_text(tmp / shards.MANIFEST, text)
        os.replace(tmp, root)
        manifest = json.loads(text)  # as a later run reads it back
    write_text(index, json.dumps({"key": key}))
    return root, manifest


def open_cache(cfg: Config, schema: Schema, srcs: Sources, sizes: Sizes
               ) -> tuple[Path, dict[str, Any], bool]:
    """The cache folder and manifest for this data (built when missing); True when an
    existing cache was reused without reading the data."""
    base = chunks.cache_root(cfg.data.stream.cache)
    stat_key = _key(cfg, [chunks.stats(files) for _, files in srcs.parts.values()], sizes)
    index = base / "index" / f"{stat_key}.json"
    with _Lock(base / "index" / f"{stat_key}.lock"):
        if index.is_file():
            key = json.loads(index.read_text(encoding="utf-8")).get("key", "")
            manifest = shards.read_manifest(base / key) if key else None
            if manifest is not None:
                return base / key, manifest, True
        root, manifest = _create(cfg, schema, srcs, sizes, base, index)
        return root, manifest, False


def build_streaming(cfg: Config, why: str = "", est: Estimate | None = None) -> Dataset:
    """The streamed Dataset: its splits are :class:`~layerwise.data.shards.ShardedData`
    over the shard cache (built on the first run)."""
    schema = Schema.from_config(cfg)
    _refuse(cfg, schema)
    shards.bound_allocator()
    srcs = Sources.of(cfg)
    est = est or estimate(cfg, srcs)
    sizes = Sizes.of(cfg, est)
    root, manifest, reused = open_cache(cfg, schema, srcs, sizes)
    schema.load_state(manifest["schema"])  # from the file: a new and a reused cache agree
    shards.give_back()  # what the passes freed, before training starts
    st = cfg.data.stream
    parts = {s: shards.ShardedData(root, s, manifest, workers=st.workers, prefetch=st.prefetch)
             if s in manifest["splits"] else None for s in SPLITS}
    info = {"source": cfg.data.path,
            "rows": {s: len(p) if p is not None else 0 for s, p in parts.items()},
            "skipped_bad_rows": manifest["skipped_bad_rows"],
            "streaming": {"why": why, "cache": str(root), "reused": reused,
                          "shards": {s: len(p.files) for s, p in parts.items() if p},
                          "shard_rows": sizes.shard, "fit_rows": manifest["sample_rows"],
                          "budget_mib": round(budget_bytes(cfg.data.memory_budget) / 2**20, 1)}}
    return Dataset(schema, parts["train"], parts["validation"], parts["test"],  # type: ignore[arg-type]
                   manifest["data_hash"], info, manifest["reference"],
                   raw_train=_load_sample(root) or None)


def held_out_sample(ds: Dataset, rows: int, seed: int) -> Dataset:
    """``ds`` with streamed validation / test splits replaced by seeded in-memory samples
    of at most ``rows`` rows (for the drift reference's embeddings and predictions)."""
    from dataclasses import replace

    def sample(part: Any) -> Any:
        if not isinstance(part, shards.ShardedData) or not len(part):
            return part
        g = torch.Generator().manual_seed(seed)
        return part.subset(torch.randperm(len(part), generator=g)[:rows])

    return replace(ds, validation=sample(ds.validation), test=sample(ds.test))
