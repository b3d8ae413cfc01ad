"""Feature types and their encoders: raw column → validated values → tensors, and back.

Every encoder is fitted on the training split only, and its fitted state is plain JSON that
travels inside the artifact, so a loaded model accepts raw rows. ``parse`` checks a raw
column and reports bad rows; ``fit`` learns statistics; ``transform`` makes tensors;
output encoders also ``decode`` model outputs.

=========  ===================  ==========================================================
type       tensor               fitted state
=========  ===================  ==========================================================
numeric    float [N] (scaled)   mean/std or min/max, fill value
binary     float [N] in {0,1}   the value meaning 1 and the one meaning 0; the labels
                                decoded, as the data spells them (``Yes``/``No``)
category   long [N]             vocabulary (index 0 = unknown for inputs)
image      float [N, C, H, W]   size, channels, scale, per-channel mean/std
text       {"ids": long [N, T], tokenizer vocabulary or BPE JSON (see data/text.py)
           "lengths": long [N]}
audio      {"mels": [N,1,M,T],  frames, per-mel-channel mean/std (see data/audio.py)
           "lengths": long [N]}
=========  ===================  ==========================================================

This file holds the tabular and image encoders and, at its end, the registries of every
feature type (``INPUT_ENCODERS``, ``OUTPUT_ENCODERS``): the other types live in their own
modules (text, tags, seq2seq, series) on the base class of data/encoder.py, and are listed
here by name, so no module registers itself as a side effect of being imported.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from layerwise.data.audio import AudioEncoder
from layerwise.data.encoder import Encoder, is_missing, no_bad_rows, plain, resolve_path
from layerwise.data.rows import SeriesRowEncoder
from layerwise.data.seq2seq import SequenceEncoder
from layerwise.data.series import ForecastEncoder, SeriesEncoder
from layerwise.data.table import Table
from layerwise.data.tags import TagsEncoder
from layerwise.data.text import NextTokenEncoder, TextEncoder
from layerwise.data.transcript import CTCEncoder
from layerwise.errors import ConfigError, DataError

_TRUE = {"1", "true", "yes", "y", "t", "1.0"}
_FALSE = {"0", "false", "no", "n", "f", "0.0"}
# each truthy word's falsy partner (and back), for a column that shows only one of them
_PARTNER = {"1": "0", "true": "false", "yes": "no", "y": "n", "t": "f", "1.0": "0.0"}
_PARTNER |= {v: k for k, v in _PARTNER.items()}


class NumericEncoder(Encoder):
    kind = "numeric"

    def __init__(self, cfg: Any, *, output: bool = False) -> None:
        super().__init__(cfg)
        self.output = output
        self.shift = 0.0
        self.scale = 1.0
        self.fill = 0.0

    def _policy(self) -> str:
        return "error" if self.output else self.cfg.missing

    def parse(self, col: np.ndarray, table: Table) -> tuple[np.ndarray, np.ndarray, list[str]]:
        n = len(col)
        bad, reasons = no_bad_rows(n)
        if col.dtype.kind in "fiub":
            values = col.astype(np.float64)
            missing = np.isnan(values)
        else:
            values = np.full(n, np.nan)
            missing = np.zeros(n, dtype=bool)
            for i, v in enumerate(col):
                if is_missing(v):
                    missing[i] = True
                    continue
                try:
                    values[i] = float(v)
                except (TypeError, ValueError):
                    bad[i] = True
                    if not reasons:
                        reasons.append(f"expected a number; found {v!r}")
        infinite = np.isinf(values)
        if infinite.any():
            if not reasons and not bad[: int(np.flatnonzero(infinite)[0])].any():
                reasons.insert(0, "expected a finite number; found infinity")
            bad |= infinite
        if self._policy() == "error" and missing.any():
            first = int(np.flatnonzero(missing)[0])
            if not bad[:first].any():
                reasons.insert(0, "the cell is empty (set missing: mean, median or constant "
                                  "on this input to fill it)")
            bad |= missing
        return values, bad, reasons

    def fit(self, values: np.ndarray) -> None:
        present = values[~np.isnan(values)]
        if len(present) == 0:
            raise DataError(f"column {self.name!r} has no numbers in the training split")
        policy = self._policy()
        self.fill = {"mean": float(present.mean()), "median": float(np.median(present)),
                     "constant": float(getattr(self.cfg, "fill_value", 0.0))}.get(policy, 0.0)
        mode = "standard" if self.output else self.cfg.normalize
        if self.output and not self.cfg.normalize:
            mode = "none"
        if mode == "standard":
            self.shift, self.scale = float(present.mean()), float(present.std()) or 1.0
        elif mode == "minmax":
            lo, hi = float(present.min()), float(present.max())
            self.shift, self.scale = lo, (hi - lo) or 1.0

    def transform(self, values: np.ndarray) -> torch.Tensor:
        v = np.where(np.isnan(values), self.fill, values)
        return torch.from_numpy(((v - self.shift) / self.scale).astype(np.float32))

    def decode(self, out: torch.Tensor) -> np.ndarray:
        return out.float().numpy().astype(np.float64) * self.scale + self.shift

    def state(self) -> dict[str, Any]:
        return {"shift": self.shift, "scale": self.scale, "fill": self.fill}

    def load_state(self, state: dict[str, Any]) -> None:
        self.shift, self.scale, self.fill = state["shift"], state["scale"], state["fill"]

    def reference(self, values: np.ndarray) -> dict[str, Any]:
        v = values[~np.isnan(values)]
        qs = np.quantile(v, np.linspace(0, 1, 11)).tolist() if len(v) else []
        return {"count": int(len(v)), "missing": int(np.isnan(values).sum()),
                "mean": float(v.mean()) if len(v) else None,
                "std": float(v.std()) if len(v) else None, "deciles": qs}


def _labels(col: np.ndarray, fill: Any,
            empty: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``parse`` for a column of labels (binary, category): each cell's plain value. An empty
    cell takes ``fill``, or, where ``fill`` is None (``missing: error``, and every output),
    is a bad row whose reason is ``empty``."""
    values = np.empty(len(col), dtype=object)
    bad = np.zeros(len(col), dtype=bool)
    for i, v in enumerate(col):
        if not is_missing(v):
            values[i] = plain(v)
        elif fill is None:
            bad[i] = True
        else:
            values[i] = fill
    return values, bad, [empty] if bad.any() else []


class BinaryEncoder(Encoder):
    kind = "binary"

    def __init__(self, cfg: Any, *, output: bool = False) -> None:
        super().__init__(cfg)
        self.output = output
        self.negative: Any = 0
        self.positive: Any = 1
        # [label of 0, label of 1] as found in the training data; None in artifacts saved
        # before labels were kept, which decode truthy words as False/True
        self.label_values: list[Any] | None = None

    def parse(self, col: np.ndarray, table: Table) -> tuple[np.ndarray, np.ndarray, list[str]]:
        error = self.output or self.cfg.missing == "error"
        return _labels(col, None if error else bool(self.cfg.fill_value), "the cell is empty")

    def fit(self, values: np.ndarray) -> None:
        # a bool among other labels is a ``missing: constant`` fill, not a third value
        labels = [v for v in values if not isinstance(v, bool)] or list(values)
        distinct = sorted({str(v) for v in labels}, key=str.lower)
        if len(distinct) > 2:
            raise DataError(f"binary column {self.name!r} has {len(distinct)} distinct values "
                            f"in the training split ({distinct[:5]}...); use type: category")
        lowered = {d.lower() for d in distinct}
        if lowered <= _TRUE | _FALSE:
            # any truthy word reads as 1 (a "Y" at prediction time for a "yes" column), but
            # predictions say what the data said: "Yes"/"No" stay strings, bools stay bools
            self.negative, self.positive = "false", "true"
            self.label_values = _truthy_labels(labels)
        else:
            self.negative = distinct[0]
            self.positive = distinct[-1] if len(distinct) == 2 else distinct[0] + "?"
            self.label_values = [self.negative, self.positive]

    def _to01(self, v: Any) -> float:
        if isinstance(v, bool):  # a fill value, or a real bool column
            return float(v)
        s = str(v)
        if self.negative == "false":
            if s.lower() in _TRUE:
                return 1.0
            if s.lower() in _FALSE:
                return 0.0
        elif s == self.positive:
            return 1.0
        elif s == self.negative:
            return 0.0
        raise DataError(f"column {self.name!r}: value {v!r} is neither {self.positive!r} "
                        f"nor {self.negative!r}")

    def transform(self, values: np.ndarray) -> torch.Tensor:
        return torch.tensor([self._to01(v) for v in values], dtype=torch.float32)

    def labels(self) -> list[Any]:
        """The decoded values of 0 and 1: the data's own labels."""
        if self.label_values is not None:
            return list(self.label_values)
        if self.negative == "false":  # an artifact saved before labels were kept
            return [False, True]
        return [self.negative, self.positive]

    def state(self) -> dict[str, Any]:
        return {"negative": self.negative, "positive": self.positive,
                "labels": self.label_values}

    def load_state(self, state: dict[str, Any]) -> None:
        self.negative, self.positive = state["negative"], state["positive"]
        labels = state.get("labels")
        self.label_values = list(labels) if labels is not None else None

    def reference(self, values: np.ndarray) -> dict[str, Any]:
        x = self.transform(values).numpy()
        return {"count": int(len(x)), "positive_rate": float(x.mean()) if len(x) else None}


def _truthy_labels(labels: list[Any]) -> list[Any]:
    """[label of 0, label of 1] of a column of truthy/falsy words or bools, each the most
    common spelling of its side in the data (``["No", "Yes"]``, ``[False, True]``); a side
    the data never shows gets its partner of the other side's label (``Yes`` → ``No``)."""
    sides: tuple[Counter[Any], Counter[Any]] = (Counter(), Counter())
    for v in labels:
        sides[str(v).lower() in _TRUE][v] += 1
    found = [side.most_common(1)[0][0] if side else None for side in sides]
    for i, other in ((0, found[1]), (1, found[0])):
        if found[i] is None:
            found[i] = _partner(other)
    return found


def _partner(v: Any) -> Any:
    """The opposite truthy word of ``v``, in its type and case: True → False, 1 → 0,
    "Yes" → "No", "Y" → "N"."""
    if isinstance(v, bool):
        return not v
    if isinstance(v, int | float):
        return type(v)(1 - v)
    word = _PARTNER[str(v).lower()]
    s = str(v)
    return word.upper() if s.isupper() else word.capitalize() if s.istitle() else word


class CategoryEncoder(Encoder):
    """Inputs reserve index 0 for values unseen in training; outputs do not."""

    kind = "category"

    def __init__(self, cfg: Any, *, output: bool = False) -> None:
        super().__init__(cfg)
        self.output = output
        self.vocab: list[Any] = []
        self._index: dict[str, int] = {}

    def parse(self, col: np.ndarray, table: Table) -> tuple[np.ndarray, np.ndarray, list[str]]:
        if col.dtype.kind in "iub":
            return col, *no_bad_rows(len(col))
        if self.output:
            return _labels(col, None, "the cell is empty")
        return _labels(col, None if self.cfg.missing == "error" else self.cfg.fill_value,
                       "the cell is empty (set missing: constant on this input to keep it)")

    def fit(self, values: np.ndarray) -> None:
        counts = Counter(plain(v) for v in values)
        if self.output:
            self.vocab = sorted(counts, key=lambda v: (str(type(v)), v))
            if len(self.vocab) < 2:
                raise DataError(f"output {self.name!r} has {len(self.vocab)} class in the "
                                "training split; a classifier needs at least 2")
        else:
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
            kept = [v for v, c in ranked if c >= self.cfg.min_count]
            self.vocab = ["<unknown>"] + kept[: self.cfg.max_categories]
        self._index = {str(v): i for i, v in enumerate(self.vocab)}

    @property
    def size(self) -> int:
        return len(self.vocab)

    def transform(self, values: np.ndarray) -> torch.Tensor:
        idx = self._index
        if self.output:
            out = []
            for v in values:
                j = idx.get(str(plain(v)))
                if j is None:
                    raise DataError(f"output {self.name!r}: label {plain(v)!r} was not seen in "
                                    f"training (known: {self.vocab[:10]})")
                out.append(j)
        else:
            out = [idx.get(str(plain(v)), 0) for v in values]
        return torch.tensor(out, dtype=torch.long)

    def class_weights(self, y: torch.Tensor) -> torch.Tensor:
        counts = torch.bincount(y, minlength=self.size).float().clamp(min=1)
        return counts.sum() / (self.size * counts)

    def state(self) -> dict[str, Any]:
        return {"vocab": self.vocab}

    def load_state(self, state: dict[str, Any]) -> None:
        self.vocab = list(state["vocab"])
        self._index = {str(v): i for i, v in enumerate(self.vocab)}

    def reference(self, values: np.ndarray) -> dict[str, Any]:
        counts = Counter(str(plain(v)) for v in values)
        total = sum(counts.values()) or 1
        return {"count": total, "frequencies": {k: c / total for k, c in
                                                 counts.most_common(50)}}


# the raster formats of sources.IMAGE_SUFFIXES (JPEG covers camera MPOs too); PIL
# identifies a file by its content, and its EPS reader would run Ghostscript on any file
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")


class ImageEncoder(Encoder):
    """Arrays ``[N,H,W]``, ``[N,H,W,C]`` or file paths → normalised ``[N,C,H,W]`` floats."""

    kind = "image"

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.size: tuple[int, int] | None = tuple(cfg.size) if cfg.size else None  # type: ignore
        self.channels: int | None = cfg.channels
        self.scale = 1.0
        self.mean: list[float] = []
        self.std: list[float] = []

    def parse(self, col: np.ndarray, table: Table) -> tuple[np.ndarray, np.ndarray, list[str]]:
        n = len(col)
        bad, reasons = no_bad_rows(n)
        if col.dtype != object:
            return self._shape(col, table), bad, reasons
        from PIL import Image, UnidentifiedImageError

        arrays: list[np.ndarray | None] = []
        for i, v in enumerate(col):
            if isinstance(v, np.ndarray):
                arrays.append(v)
                continue
            path = resolve_path(str(v), table.origin)
            try:
                with Image.open(path, formats=IMAGE_FORMATS) as im:
                    mode = "RGB" if (self.channels == 3 or (self.channels is None and
                                     im.mode not in ("L", "1", "I;16", "I", "F"))) else "L"
                    if self.channels is None:
                        self.channels = 3 if mode == "RGB" else 1
                    im = im.convert(mode)
                    if self.size is None:
                        self.size = (im.height, im.width)
                    if (im.height, im.width) != self.size:
                        im = im.resize((self.size[1], self.size[0]), Image.BILINEAR)
                    arrays.append(np.asarray(im, dtype=np.uint8))
            except (OSError, UnidentifiedImageError, ValueError, SyntaxError,
                    Image.DecompressionBombError) as e:
                bad[i] = True
                arrays.append(None)
                if not reasons:
                    if isinstance(e, Image.DecompressionBombError):  # header claims >1.8e8 px
                        kind = "too large"
                    elif "truncat" in str(e).lower() or isinstance(e, SyntaxError):
                        kind = "truncated or corrupt"
                    else:
                        kind = "unreadable"
                    reasons.append(f"image {path!r} is {kind} ({e})")
        good = [a for a in arrays if a is not None]
        if not good:
            return np.zeros((n, 1, 1, 1), dtype=np.uint8), bad, reasons
        filler = np.zeros_like(good[0])
        stacked = np.stack([a if a is not None else filler for a in arrays])
        return self._shape(stacked, table), bad, reasons

    def _shape(self, x: np.ndarray, table: Table) -> np.ndarray:
        """Bring arrays to [N, C, H, W]."""
        if x.ndim == 2:  # flattened square images
            side = int(round(math.sqrt(x.shape[1])))
            if self.size is None and side * side == x.shape[1]:
                self.size = (side, side)
            if self.size is None or self.size[0] * self.size[1] != x.shape[1]:
                raise DataError(f"{table.origin}, column {self.name!r}: rows of {x.shape[1]} "
                                "values are not square images; set size: [height, width]")
            x = x.reshape(len(x), 1, *self.size)
        elif x.ndim == 3:
            x = x[:, None]
        elif x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
            x = x.transpose(0, 3, 1, 2)[:, :3]  # channels last; RGBA drops its alpha
        elif x.ndim != 4:
            raise DataError(f"{table.origin}, column {self.name!r}: expected images shaped "
                            f"[N,H,W] or [N,H,W,C]; got {list(x.shape)}")
        if self.channels is None:
            self.channels = x.shape[1]
        if x.shape[1] != self.channels:
            if self.channels == 3 and x.shape[1] == 1:
                x = np.repeat(x, 3, axis=1)
            elif self.channels == 1 and x.shape[1] == 3:
                x = x.mean(axis=1, keepdims=True)
            else:
                raise DataError(f"{table.origin}, column {self.name!r}: expected images with "
                                f"{self.channels} channels; got shape {list(x.shape)}")
        if self.size is None:
            self.size = (x.shape[2], x.shape[3])
        if tuple(x.shape[2:]) != tuple(self.size):
            t = torch.nn.functional.interpolate(torch.as_tensor(x, dtype=torch.float32),
                                                size=self.size, mode="bilinear",
                                                align_corners=False)
            x = t.numpy()
        return x

    def fit(self, values: np.ndarray) -> None:
        # numpy's float64 sums, one channel at a time: a parallel float32 reduction would
        # make the statistics (and so every weight) depend on the thread count
        top = float(np.max(values))
        self.scale = 255.0 if top > 1.0 + 1e-6 else 1.0
        if top > 255.0 + 1e-6:
            self.scale = top
        self.mean, self.std = [], []
        for c in range(values.shape[1]):
            x = np.asarray(values[:, c], dtype=np.float64) / np.float64(self.scale)
            self.mean.append(float(np.float32(x.mean())))
            self.std.append(float(np.float32(x.std(ddof=1))) or 1.0)

    def transform(self, values: np.ndarray) -> torch.Tensor:
        x = torch.as_tensor(values).to(torch.float32) / self.scale
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return ((x - mean) / std).contiguous()

    def state(self) -> dict[str, Any]:
        return {"size": list(self.size or ()), "channels": self.channels, "scale": self.scale,
                "mean": self.mean, "std": self.std}

    def load_state(self, state: dict[str, Any]) -> None:
        self.size = tuple(state["size"])  # type: ignore[assignment]
        self.channels = state["channels"]
        self.scale, self.mean, self.std = state["scale"], state["mean"], state["std"]

    def reference(self, values: np.ndarray) -> dict[str, Any]:
        x = torch.as_tensor(values, dtype=torch.float32) / self.scale
        return {"count": int(len(x)), "pixel_mean": float(x.mean()),
                "pixel_std": float(x.std())}


# ------------------------------------------------------------------------ the registries
# Every feature type, in one place: a config ``type`` → its encoder class (keyed by the
# class's ``kind``). tests/test_registries.py checks that every type the config accepts
# is here.


def _by_kind(*classes: type[Encoder]) -> Mapping[str, type[Encoder]]:
    """A read-only table ``kind`` → class; two classes of one kind are an error."""
    table: dict[str, type[Encoder]] = {}
    for cls in classes:
        if cls.kind in table:
            raise ConfigError(f"feature type {cls.kind!r} is already registered (by "
                              f"{table[cls.kind].__module__}.{table[cls.kind].__qualname__})")
        table[cls.kind] = cls
    return MappingProxyType(table)


INPUT_ENCODERS = _by_kind(NumericEncoder, BinaryEncoder, CategoryEncoder, ImageEncoder,
                          TextEncoder, SeriesEncoder, SeriesRowEncoder, AudioEncoder)
OUTPUT_ENCODERS = _by_kind(NumericEncoder, BinaryEncoder, CategoryEncoder, NextTokenEncoder,
                           ForecastEncoder, TagsEncoder, SequenceEncoder, CTCEncoder)


def encoder_class(type_: str, *, output: bool) -> type[Encoder]:
    """The encoder of an input (or output) feature type; a miss lists the valid types."""
    table = OUTPUT_ENCODERS if output else INPUT_ENCODERS
    if type_ not in table:
        raise DataError(f"no {'output' if output else 'input'} encoder for type {type_!r}; "
                        f"registered: {', '.join(sorted(table))}")
    return table[type_]


def make_encoder(cfg: Any, *, output: bool) -> Encoder:
    cls = encoder_class(cfg.type, output=output)
    if cls in (ImageEncoder, AudioEncoder):
        return cls(cfg)
    return cls(cfg, output=output)  # type: ignore[call-arg]
