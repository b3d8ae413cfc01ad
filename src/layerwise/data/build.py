"""From a config to encoded train / validation / test tensors.

``build(config)``: sources → checked columns → seeded (stratified) split → encoders fitted
on the training split only → tensors. The fitted :class:`Schema` travels in the artifact and
turns raw rows into model inputs at prediction time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from layerwise.config import Config, DataConfig
from layerwise.data import catalogue, sources
from layerwise.data.batching import TensorData
from layerwise.data.columns import expand as expand_columns
from layerwise.data.columns import needs_expansion
from layerwise.data.dataset import Dataset
from layerwise.data.encoder import Encoder
from layerwise.data.encoder_artifact import adopt_encoders
from layerwise.data.features import CategoryEncoder, ImageEncoder, make_encoder
from layerwise.data.folds import fold_split
from layerwise.data.seq2seq import SequenceEncoder
from layerwise.data.series import build_series, encode_table
from layerwise.data.sources import BadRows
from layerwise.data.table import Table
from layerwise.data.text import NextTokenEncoder, TextEncoder
from layerwise.errors import ConfigError, DataError

NUMERIC_KEY = "numeric"  # numeric + binary inputs, concatenated: float [N, k]
CATEGORY_KEY = "category"  # category inputs, stacked: long [N, m]


class Schema:
    """The fitted input and output encoders, and how they map to tensors."""

    def __init__(self, inputs: list[Encoder], outputs: list[Encoder]) -> None:
        self.inputs, self.outputs = inputs, outputs
        self.numeric = [e for e in inputs if e.kind in ("numeric", "binary")]
        self.category = [e for e in inputs if e.kind == "category"]
        self.images = [e for e in inputs if e.kind == "image"]
        # each text input: {"ids": long [N, T], "lengths": long [N]} under its own name
        self.texts = [e for e in inputs if isinstance(e, TextEncoder)]
        # a timeseries input: float windows [N, lookback, channels] (see data/series.py)
        self.series = [e for e in inputs if e.kind == "timeseries"]
        # a series row: float [N, L, 1] from many columns (see data/rows.py)
        self.rows = [e for e in inputs if e.kind == "series"]
        # an audio input: {"mels": float [N, 1, n_mels, frames], "lengths": long [N]}
        self.audio = [e for e in inputs if e.kind == "audio"]

    @classmethod
    def from_config(cls, cfg: Config) -> Schema:
        schema = cls([make_encoder(f, output=False) for f in cfg.inputs],
                     [make_encoder(f, output=True) for f in cfg.outputs])
        texts = {t.name: t for t in schema.texts}
        for e in schema.outputs:  # a language model's targets come from its text input
            if isinstance(e, NextTokenEncoder):
                e.source = texts[e.column]
        by_name = {e.name: e for e in schema.inputs}
        for e in schema.outputs:  # forecast and tags outputs read an input's encoder
            if hasattr(e, "link"):
                e.link(by_name)
        return schema

    # -- parsing and encoding -----------------------------------------------------------
    def parse(self, table: Table, *, targets: bool, bad: BadRows) -> tuple[dict, Table]:
        """Check every used column; drop (and count) bad rows or raise on the first."""
        encoders = self.inputs + (self.outputs if targets else [])
        values: dict[str, np.ndarray] = {}
        mask = np.zeros(len(table), dtype=bool)
        first: tuple[int, str, str] | None = None
        for enc in encoders:
            col = enc.read(table) if hasattr(enc, "read") else \
                table.column(getattr(enc, "column", enc.name))  # read: many columns
            v, b, reasons = enc.parse(col, table)
            values[enc.name] = v
            if b.any():
                i = int(np.flatnonzero(b)[0])
                if first is None or i < first[0]:
                    first = (i, enc.name, reasons[0])
                mask |= b
        if first is not None:
            if not bad.enabled:
                raise DataError(f"{table.where(first[0], first[1])}: {first[2]}")
            for i in np.flatnonzero(mask).tolist():
                if i == first[0]:  # the first skipped row, quoted by the cap, says why
                    bad.skip(table.where(i, first[1]), first[2])
                else:
                    bad.skip(table.where(i), "bad value")
            keep = np.flatnonzero(~mask)
            values = {k: v[keep] for k, v in values.items()}
            table = table.take(keep)
        return values, table

    def fit(self, values: dict[str, np.ndarray]) -> None:
        for enc in self.inputs + self.outputs:
            enc.fit(values[enc.name])

    def encode_inputs(self, values: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        if self.numeric:
            out[NUMERIC_KEY] = torch.stack([e.transform(values[e.name]) for e in self.numeric],
                                           dim=1)
        if self.category:
            out[CATEGORY_KEY] = torch.stack([e.transform(values[e.name]) for e in self.category],
                                            dim=1)
        for e in self.images:
            out[e.name] = e.transform(values[e.name])
        for t in self.texts:
            out[t.name] = t.transform(values[t.name])
        for e in self.series + self.rows + self.audio:
            out[e.name] = e.transform(values[e.name])
        return out

    def encode_targets(self, values: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return {e.name: e.transform(values[e.name]) for e in self.outputs}

    def encode(self, values: dict[str, np.ndarray]) -> TensorData:
        inputs, targets = self.encode_inputs(values), self.encode_targets(values)
        for e in self.outputs:  # teacher forcing: a decoder reads the targets it predicts
            if isinstance(e, SequenceEncoder):
                inputs[e.name] = targets[e.name]
        return TensorData(inputs, targets)

    # -- description and persistence ----------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """What a model needs to know to build its layers."""
        return {
            "numeric_dim": len(self.numeric),
            "category_sizes": [e.size for e in self.category],  # type: ignore[attr-defined]
            "category_dims": [e.cfg.embedding_dim for e in self.category],
            "images": {e.name: (e.channels, *e.size) for e in self.images},  # type: ignore
            "category_names": [e.name for e in self.category],
            "image_stats": {e.name: {"mean": e.mean, "std": e.std}  # type: ignore[attr-defined]
                            for e in self.images},
            "tta": [e.name for e in self.images if e.cfg.tta],
            "texts": {t.name: t.describe() for t in self.texts},  # vocab_size, max_length
            "series": {e.name: e.describe() for e in self.series},  # channels, lookback
            "audio": {e.name: e.describe() for e in self.audio},  # shape, frames, stack
            "rows": {e.name: e.describe() for e in self.rows},  # channels 1, lookback L
            "sequences": {e.name: e.describe() for e in self.outputs  # + bos_id, eos_id
                          if isinstance(e, SequenceEncoder)},
            "tagged": [e.cfg.input for e in self.outputs if e.kind == "tags"],  # texts tagged
            "outputs": {e.name: (e.kind, e.size if isinstance(e, CategoryEncoder | NextTokenEncoder)
                                 or e.kind in ("forecast", "tags", "ctc") else 1)
                        for e in self.outputs},
        }

    def state(self) -> dict[str, Any]:
        return {"inputs": [{"name": e.name, "type": e.kind, "state": e.state()}
                           for e in self.inputs],
                "outputs": [{"name": e.name, "type": e.kind, "state": e.state()}
                            for e in self.outputs]}

    def load_state(self, state: dict[str, Any]) -> None:
        for encs, saved in ((self.inputs, state["inputs"]), (self.outputs, state["outputs"])):
            if [(e.name, e.kind) for e in encs] != [(s["name"], s["type"]) for s in saved]:
                raise DataError("the saved feature schema does not match the config's features")
            for e, s in zip(encs, saved, strict=True):
                e.load_state(s["state"])

    def reference(self, values: dict[str, np.ndarray]) -> dict[str, Any]:
        return {e.name: {"type": e.kind, **e.reference(values[e.name])}
                for e in self.inputs + self.outputs}


def load_parts(data: DataConfig, bad: BadRows | None = None) -> dict[str, Table]:
    """The raw tables: ``all``, or some of ``train`` / ``validation`` / ``test``.

    ``bad`` counts rows skipped while reading; pass the one that parsing uses too, so that
    ``max_bad_rows`` caps (and ``info["skipped_bad_rows"]`` reports) both kinds together.
    """
    bad = bad or BadRows(data.skip_bad_rows, data.max_bad_rows)
    if data.dataset:
        parts = catalogue.load(data.dataset)
        if data.limit:
            parts = {k: t.take(np.arange(min(len(t), data.limit))) for k, t in parts.items()}
    else:
        parts = {"all": sources.read(data.path, data.format, delimiter=data.delimiter,  # type: ignore[arg-type]
                                     encoding=data.encoding,
                                     bad=bad, limit=data.limit,
                                     looked_in=data.looked_in("path"))}
    for key, path in (("validation", data.validation_path), ("test", data.test_path)):
        if path:
            parts[key] = sources.read(path, data.format, delimiter=data.delimiter, bad=bad,
                                      encoding=data.encoding,
                                      looked_in=data.looked_in(f"{key}_path"))
    if "train" in parts and "all" not in parts:
        parts["all"] = parts.pop("train")
    return parts


def _split_labels(schema: Schema, values: dict[str, np.ndarray]) -> np.ndarray | None:
    for e in schema.outputs:
        if e.kind in ("category", "binary"):
            return np.array([str(v) for v in values[e.name]])
    return None


def _split(n: int, frac: float, labels: np.ndarray | None, seed: int
           ) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held_out) with ``frac`` held out, stratified when labels allow it.

    ``labels=None`` gives a plain random split (``split.stratify: false``).
    """
    from sklearn.model_selection import train_test_split

    idx = np.arange(n)
    if frac <= 0:
        return idx, idx[:0]
    strat = labels
    if strat is not None:
        _, counts = np.unique(strat, return_counts=True)
        if counts.min() < 2 or int(round(frac * n)) < len(counts):
            strat = None
    keep, held = train_test_split(idx, test_size=frac, random_state=seed, stratify=strat)
    return np.sort(keep), np.sort(held)


def _subset(values: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[idx] for k, v in values.items()}


def data_hash(parts: dict[str, dict[str, np.ndarray]]) -> str:
    h = hashlib.sha256()
    for part in sorted(parts):
        for name in sorted(parts[part]):
            v = parts[part][name]
            h.update(f"{part}/{name}/{v.dtype}/{v.shape}".encode())
            h.update(np.ascontiguousarray(v).tobytes() if v.dtype != object
                     else "\x1f".join(map(str, v)).encode())
    return h.hexdigest()[:16]


_SPLIT_NAMES = {"train": "train", "training": "train", "validation": "validation",
                "val": "validation", "valid": "validation", "test": "test"}


def _split_by_column(table: Table, column: str, values: dict[str, np.ndarray]
                     ) -> dict[str, dict[str, np.ndarray]]:
    """The parts a column names row by row (``data.split.column``)."""
    names = np.array([str(v).strip().lower() for v in table.column(column)])
    unknown = sorted(set(names) - set(_SPLIT_NAMES))
    if unknown:
        i = int(np.flatnonzero(names == unknown[0])[0])
        raise DataError(f"{table.where(i, column)}: split must be one "
                        f"of train, validation, test; found {unknown[0]!r}")
    mapped = np.array([_SPLIT_NAMES[n] for n in names])
    return {s: _subset(values, np.flatnonzero(mapped == s))
            for s in ("train", "validation", "test")}


def _split_at_random(parsed: dict[str, dict[str, np.ndarray]], data: DataConfig,
                     labels: Callable[[dict[str, np.ndarray]], np.ndarray | None], seed: int
                     ) -> dict[str, dict[str, np.ndarray]]:
    """Hold out the test and validation parts the files do not give, seeded (and stratified
    by ``labels``)."""
    splits: dict[str, dict[str, np.ndarray]] = {}
    rest = parsed["all"]
    if "test" in parsed:
        splits["test"] = parsed["test"]
    else:
        keep, held = _split(len(next(iter(rest.values()))), data.split.test,
                            labels(rest), seed)
        splits["test"], rest = _subset(rest, held), _subset(rest, keep)
    if "validation" in parsed:
        splits["validation"] = parsed["validation"]
        splits["train"] = rest
    else:
        n = len(next(iter(rest.values())))
        frac = data.split.validation / max(1e-9, 1 - (0 if "test" in parsed
                                                        else data.split.test))
        keep, held = _split(n, min(frac, 0.9) if data.split.validation else 0.0,
                            labels(rest), seed + 1)
        splits["validation"], splits["train"] = _subset(rest, held), _subset(rest, keep)
    return splits


def _split_folds(parsed: dict[str, dict[str, np.ndarray]], table: Table, data: DataConfig,
                 labels: Callable[[dict[str, np.ndarray]], np.ndarray | None], seed: int
                 ) -> dict[str, dict[str, np.ndarray]]:
    """Cross-validation (``data.split.folds``): the test split is one fold of the rows that
    training draws from (a source's own test part is left out); the validation split is
    held out of the other folds as ``split.validation`` says, by group when folds are."""
    sp = data.split
    pool = parsed["all"]
    n = len(next(iter(pool.values())))
    groups = table.column(sp.group) if sp.group else None
    rest, held = fold_split(n, sp.folds or 2, sp.fold, labels(pool), groups,
                            seed + 1000 * sp.repeat, where=table.origin)
    splits = {"test": _subset(pool, held)}
    pool = _subset(pool, rest)
    if "validation" in parsed:
        splits["validation"], splits["train"] = parsed["validation"], pool
        return splits
    frac = min(sp.validation / (1 - 1 / (sp.folds or 2)), 0.9)
    if groups is not None and frac > 0:
        keep, val = _group_split(groups[rest], frac, seed + 1)
    else:
        keep, val = _split(len(rest), frac, labels(pool), seed + 1)
    splits["validation"], splits["train"] = _subset(pool, val), _subset(pool, keep)
    return splits


def _group_split(groups: np.ndarray, frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held_out), about ``frac`` of the rows held out in whole groups."""
    from sklearn.model_selection import GroupShuffleSplit

    g = np.array([str(v) for v in groups])
    if len(np.unique(g)) < 2:
        raise DataError("grouped folds: the training part holds one group; the validation "
                        "split needs another (set data.split.validation: 0 or use more "
                        "groups)")
    keep, held = next(GroupShuffleSplit(1, test_size=frac, random_state=seed).split(g, g, g))
    return np.sort(keep), np.sort(held)


def labelled_indices(n: int, labelled: int | float, labels: np.ndarray | None, seed: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, dropped) of ``n`` training rows: ``labelled`` rows (or that share)
    kept, stratified by ``labels`` where every class can keep one, seeded by ``seed``."""
    from sklearn.model_selection import train_test_split

    k = labelled if isinstance(labelled, int) else int(round(labelled * n))
    if k > n:
        raise DataError(f"data.split.labelled: {k} training rows asked for; the training "
                        f"split holds {n}")
    idx = np.arange(n)
    if k >= n:
        return idx, idx[:0]
    strat = labels
    if strat is not None:
        _, counts = np.unique(strat, return_counts=True)
        if counts.min() < 2 or k < len(counts) or n - k < len(counts):
            strat = None
    kept, dropped = train_test_split(idx, train_size=max(k, 1), random_state=seed,
                                     stratify=strat)
    return np.sort(kept), np.sort(dropped)


def _labelled_part(train: dict[str, np.ndarray], sp: Any,
                   labels: Callable[[dict[str, np.ndarray]], np.ndarray | None], seed: int
                   ) -> dict[str, np.ndarray]:
    """The training rows ``split.labelled`` keeps, or with ``split.unlabelled`` the rest."""
    n = len(next(iter(train.values())))
    kept, dropped = labelled_indices(n, sp.labelled, labels(train), seed)
    if sp.unlabelled and not len(dropped):
        raise DataError(f"data.split.unlabelled: split.labelled ({sp.labelled}) keeps all "
                        f"{n} training rows; no unlabelled rest is left")
    return _subset(train, dropped if sp.unlabelled else kept)


def resolve_columns(cfg: Config) -> None:
    """Expand the config's column specs (globs, ranges: data/columns.py) in place, reading
    the source for its column names only when a spec needs them: callers that compare
    or store the config before :func:`build` (a resume's check) see the columns it uses."""
    if needs_expansion(cfg):
        expand_columns(cfg, list(next(iter(load_parts(cfg.data).values())).columns))


def build(cfg: Config) -> Dataset:
    """Load, check, split, fit encoders on train, and encode every split."""
    data = cfg.data
    bad = BadRows(data.skip_bad_rows, data.max_bad_rows)
    parts = load_parts(data, bad)
    expand_columns(cfg, list(next(iter(parts.values())).columns))  # globs → columns
    schema = Schema.from_config(cfg)
    if schema.series and data.split.folds:
        raise ConfigError("data.split.folds: a time series is split chronologically; "
                          "shuffled folds would train on the future")
    if schema.series and data.split.labelled is not None:
        raise ConfigError("data.split.labelled: a time series is split chronologically; "
                          "keeping a random part of its windows is not supported")
    if schema.series:  # windows of one time-indexed table, split chronologically
        return build_series(cfg, schema, parts)
    parsed: dict[str, dict[str, np.ndarray]] = {}
    tables: dict[str, Table] = {}
    for key, table in parts.items():
        parsed[key], tables[key] = schema.parse(table, targets=True, bad=bad)
    seed = data.split.seed if data.split.seed is not None else cfg.seed

    def labels(values: dict[str, np.ndarray]) -> np.ndarray | None:
        return _split_labels(schema, values) if data.split.stratify else None

    if data.split.column:
        splits = _split_by_column(tables["all"], data.split.column, parsed["all"])
    elif data.split.folds:
        splits = _split_folds(parsed, tables["all"], data, labels, seed)
    else:
        splits = _split_at_random(parsed, data, labels, seed)

    if data.split.labelled is not None:
        splits["train"] = _labelled_part(splits["train"], data.split, labels, seed + 2)
    train_n = len(next(iter(splits["train"].values())))
    if train_n == 0:
        raise DataError("the training split is empty; check data.split")
    schema.fit(splits["train"])
    init_from = getattr(cfg.model, "init_from", None)
    if init_from:  # token ids (and image statistics) as the pre-trained encoder's
        adopt_encoders(schema, init_from, {f.name: f for f in cfg.inputs})
    encoded = {k: schema.encode(v) if len(next(iter(v.values()))) else None
               for k, v in splits.items()}
    info = {"source": data.dataset or data.path,
            "rows": {k: (len(t) if t is not None else 0) for k, t in encoded.items()},
            "skipped_bad_rows": bad.count}
    return Dataset(schema, encoded["train"], encoded.get("validation"), encoded.get("test"),
                   data_hash(splits), info, schema.reference(splits["train"]),
                   raw_test=splits.get("test"), raw_train=splits["train"],
                   raw_validation=splits.get("validation"))


def encode_rows(schema: Schema, table: Table, *, targets: bool) -> tuple[TensorData, Table]:
    """Check and encode new rows with an already fitted schema (no fitting)."""
    if schema.series:  # every window of the table whose horizon it holds
        return encode_table(schema, table, targets=targets)[0], table
    values, table = schema.parse(table, targets=targets, bad=BadRows())
    if targets:
        return schema.encode(values), table
    return TensorData(schema.encode_inputs(values), {}), table


def images_shape(schema: Schema) -> dict[str, tuple[int, ...]]:
    return {e.name: (e.channels, *e.size) for e in schema.images  # type: ignore[misc]
            if isinstance(e, ImageEncoder)}
