"""A first config for a data file, guessed from its columns (``layerwise init``).

    >>> import numpy as np
    >>> from layerwise.data.table import Table
    >>> t = Table({"x": np.arange(40.0).astype(str), "y": np.array(["a", "b"] * 20)}, "t.csv")
    >>> p = propose_table(t, "t.csv", "csv", ",")
    >>> p.target, p.model["family"]
    ('y', 'mlp')

Every choice is a plain rule of the data's kinds and size, and each is written into the
YAML as a comment beside the key it set, so the file explains itself:

- **the output**: ``--target``, else a column named like a label (``label``, ``target``,
  ``class``, ``y``, …), else the last column; two values make it binary, strings or at
  most 20 whole numbers a category, other numbers numeric;
- **the family**: ``cnn`` for images; for text, ``bag`` (fastText-style, trains in
  seconds) when there are fewer than 5,000 rows or the texts are long (95th percentile
  over 256 words), otherwise a bidirectional LSTM (``rnn``), which beat TF-IDF + logistic
  regression on 38k tweets; ``mlp`` for tables (under ``CV_ROWS`` training rows
  ``layerwise init`` then keeps it or a linear model by 5-fold cross-validation:
  layerwise.experiments.choose);
- **sizes** from the number of rows: widths, epochs and batch size shrink with the data,
  and early stopping (restoring the best weights) guards every run against overfitting.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from layerwise.data.profile import ColumnProfile, profile_table, read_any, series_prefix
from layerwise.data.table import Table
from layerwise.errors import DataError

LABEL_NAMES = ("label", "target", "class", "y", "outcome", "sentiment", "category", "species")
BAG_ROWS = 5000        # fewer rows than this: the bag family (neural sequence models overfit)
LONG_TEXT = 256        # 95th-percentile words above this: the bag family (cheap on long text)
MAX_TOKENS = 512       # the cap of a text input's max_length
CV_ROWS = 1000         # fewer training rows than this: init picks MLP or linear by 5-fold CV
Line = tuple[str, Any, str]  # (key, value, comment)
_BARE = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*$")  # strings YAML reads as themselves
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "y", "n", "null", "none", "~"}


@dataclass
class Proposal:
    """What ``init`` found and proposes; :meth:`yaml` writes it as a commented config."""

    source: str
    rows: int
    profiles: list[ColumnProfile]
    target: str
    inputs: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    outputs: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    data: list[Line] = field(default_factory=list)
    model: dict[str, Any] = field(default_factory=dict)
    model_lines: list[Line] = field(default_factory=list)
    train_lines: list[Line] = field(default_factory=list)
    grouped: dict[str, str] = field(default_factory=dict)  # column → its series input

    def role(self, name: str) -> str:
        if name == self.target:
            return "output"
        if name in self.grouped:
            return f"input ({self.grouped[name]})"
        return "input" if any(f["name"] == name for f, _ in self.inputs) else "skipped"

    @property
    def small_table(self) -> bool:
        """An MLP proposal on fewer than ``CV_ROWS`` training rows: a linear model may do
        better, and ``layerwise init`` compares the two by cross-validation."""
        return self.model.get("family") == "mlp" and int(self.rows * 0.7) < CV_ROWS

    def set_model(self, key: str, value: Any, comment: str) -> None:
        """Replace (or add) one ``model:`` line and its reason."""
        lines = [(k, v, c) for k, v, c in self.model_lines if k != key]
        at = next((i for i, (k, _, _) in enumerate(self.model_lines) if k == key), len(lines))
        self.model_lines = [*lines[:at], (key, value, comment), *lines[at:]]
        self.model = {k: v for k, v, _ in self.model_lines}

    def yaml(self, config_path: Path, name: str) -> str:
        """The config as YAML text, each choice with its reason; ``data.path`` relative to
        ``config_path``'s folder when the data lies under it."""
        out = [f"# written by `layerwise init {self.source}`: {self.rows:,} rows, "
               f"{len(self.profiles)} columns.",
               "# Every choice below is a guess from the data, with its reason; edit freely.",
               f"#   layerwise train {config_path.name}", f"name: {_flow(name)}", "seed: 0",
               "data:", _line("path", _data_path(self.source, config_path),
                              "relative to this file's folder"),
               *(_line(k, v, c) for k, v, c in self.data), "inputs:"]
        out += [_item(f, c) for f, c in self.inputs]
        out += [f"  # skipped {n!r}: {why}" for n, why in self.skipped]
        out += ["outputs:", *(_item(f, c) for f, c in self.outputs), "model:"]
        out += [_line(k, v, c) for k, v, c in self.model_lines]
        out += ["train:", *(_line(k, v, c) for k, v, c in self.train_lines)]
        return "\n".join(out) + "\n"


def propose(path: str | Path, target: str | None = None) -> Proposal:
    """Read ``path`` (a CSV, Parquet, JSON Lines file or an image folder) and propose."""
    table, fmt, delimiter, encoding = read_any(path)
    p = propose_table(table, str(path), fmt, delimiter, target)
    if encoding != "utf-8":
        p.data.insert(0, ("encoding", encoding, "the file is not UTF-8 text"))
    return p


def propose_table(table: Table, source: str, fmt: str, delimiter: str,
                  target: str | None = None) -> Proposal:
    """The proposal for a table already read (see :func:`propose`)."""
    if len(table) < 10:
        raise DataError(f"{source}: {len(table)} rows; init needs at least 10 to propose a "
                        "model and its splits")
    profiles = profile_table(table)
    out = _output(_choose_target(profiles, target, source), source)
    p = Proposal(source, len(table), profiles, out.name)
    if delimiter != ",":
        p.data.append(("delimiter", delimiter, "guessed from the header line"))
    if out.missing:
        p.data += [("skip_bad_rows", True, f"{out.missing:,} rows have no {out.name!r}: "
                    "skipped (and counted)"), ("max_bad_rows", out.missing, "")]
    _features(p, out)
    _model(p)
    return p


# ---------------------------------------------------------------------------- features


def _choose_target(profiles: list[ColumnProfile], target: str | None,
                   source: str) -> ColumnProfile:
    by_name = {c.name: c for c in profiles}
    if target is not None:
        if target not in by_name:
            raise DataError(f"{source}: no column {target!r} for --target (columns: "
                            f"{', '.join(map(repr, list(by_name)[:30]))})")
        return by_name[target]
    for c in profiles:
        if c.name.lower() in LABEL_NAMES:
            return c
    return profiles[-1]


def _output(c: ColumnProfile, source: str) -> ColumnProfile:
    if c.kind in ("binary", "category", "numeric", "series"):
        return c
    raise DataError(f"{source}: column {c.name!r} looks like {c.kind} ({c.evidence()}), "
                    "which cannot be predicted; name the column to predict with --target")


def _output_feature(c: ColumnProfile) -> tuple[dict[str, Any], str]:
    if c.kind == "binary":
        return {"name": c.name, "type": "binary"}, f"two values ({', '.join(c.top[:2])})"
    if c.kind == "category" or (c.integer and c.distinct <= 20):
        why = "whole numbers, few of them" if c.numeric_rate else "strings"
        return {"name": c.name, "type": "category"}, f"{c.distinct} classes ({why})"
    return {"name": c.name, "type": "numeric"}, f"{c.distinct:,} distinct numbers: regression"


def _features(p: Proposal, out: ColumnProfile) -> None:
    p.outputs.append(_output_feature(out))
    runs: dict[str, list[ColumnProfile]] = {}
    for c in p.profiles:
        if c.kind == "series" and c is not out:
            runs.setdefault(series_prefix(c.name), []).append(c)
    for c in p.profiles:
        if c is out:
            continue
        if c.kind == "series":
            run = runs[series_prefix(c.name)]
            if c is run[0]:
                p.inputs.append(_series_input(run, {c.name for c in p.profiles}))
            p.grouped[c.name] = p.inputs[-1][0]["name"] if c is run[0] else \
                p.grouped[run[0].name]
            continue
        feature, why = _input_feature(c)
        if feature is None:
            p.skipped.append((c.name, why))
            continue
        p.inputs.append((feature, why))
    if not p.inputs:
        raise DataError(f"{p.source}: no usable input column besides {out.name!r} "
                        f"(skipped: {', '.join(n for n, _ in p.skipped) or 'none'})")


def _series_input(run: list[ColumnProfile], names: set[str]
                  ) -> tuple[dict[str, Any], str]:
    """One ``series`` input over a run of numbered columns, named by a range."""
    prefix = series_prefix(run[0].name)
    name = prefix.strip("_-. ") or "series"
    while name in names:
        name += "_series"
    f: dict[str, Any] = {"name": name, "type": "series",
                         "columns": f"{run[0].name}..{run[-1].name}"}
    if any(c.missing for c in run):
        f["missing"] = "interpolate"
    return f, (f"{len(run)} numbered columns {run[0].name}…{run[-1].name}: one series "
               "per row")


def _input_feature(c: ColumnProfile) -> tuple[dict[str, Any] | None, str]:
    f: dict[str, Any] = {"name": c.name}
    if c.kind == "numeric":
        f["type"] = "numeric"
        if c.missing:
            f["missing"] = "median"
    elif c.kind in ("binary", "category"):
        f["type"] = c.kind
        if c.missing:
            f["missing"] = "constant"
    elif c.kind == "text":
        f.update(type="text", tokenizer="word", max_length="auto", min_frequency=2)
        if c.missing:
            f["missing"] = "constant"
        return f, (f"{c.mean_words:.1f} words on average; max_length auto: the 95th "
                   f"percentile of the training texts (here about {c.p95_words} tokens, "
                   f"at most {MAX_TOKENS})")
    elif c.kind == "image":
        f["type"] = "image"
    elif c.kind == "audio":
        # the longest clip sampled, up to the next 0.1 s (1 s when no header was read)
        seconds = math.ceil(c.seconds * 10) / 10 if c.seconds else 1.0
        f.update(type="audio", length=seconds, augment={"time_masks": 2, "freq_masks": 2})
        return f, (f"sound clips, the longest sampled {c.seconds:.2f} s: each padded or "
                   f"cropped to {seconds} s; log-mel spectrograms, masked in training")
    else:
        return None, _SKIP[c.kind]
    return f, c.evidence()


_SKIP = {"constant": "one value only: it tells the rows nothing apart",
         "id": "a different short string in every row (an id): nothing to learn from",
         "date": "dates are not an input type yet; derive numbers (year, month, weekday) "
                 "as columns to use them"}


# ---------------------------------------------------------------------------- model


def _model(p: Proposal) -> None:
    kinds = {f["type"] for f, _ in p.inputs}
    n = int(p.rows * 0.7)  # the training split of the default 0.7 / 0.1 / 0.2
    if "image" in kinds or "audio" in kinds:  # a spectrogram is a one-channel image
        _cnn(p, n, "audio" if "image" not in kinds else "image")
    elif "series" in kinds and "text" not in kinds:
        _cnn1d(p, n, max(_length(f["columns"]) for f, _ in p.inputs if f["type"] == "series"))
    elif "text" in kinds:
        texts = [c for c in p.profiles if c.kind == "text" and p.role(c.name) == "input"]
        long = max(c.p95_words for c in texts) > LONG_TEXT
        if n < BAG_ROWS or long:
            _bag(p, n, "long texts" if long else f"{n:,} training rows (under {BAG_ROWS:,})")
        else:
            _rnn(p, n)
    else:
        _mlp(p, n)
    p.model = {k: v for k, v, _ in p.model_lines}


def _mlp(p: Proposal, n: int) -> None:
    hidden = [64, 32] if n < 2000 else [128, 64] if n < 50_000 else [256, 128]
    p.model_lines += [("family", "mlp", "numbers and categories only: a multi-layer "
                       "perceptron"),
                      ("hidden", hidden, f"widths for {n:,} training rows"),
                      ("dropout", 0.1, "light regularisation"), ("norm", "none", "")]
    epochs = 200 if n < 1000 else 100 if n < 10_000 else 30
    _train(p, epochs, 32 if n < 2000 else 128, 1e-3, 1e-4, patience=15)


def _cnn(p: Proposal, n: int, kind: str = "image") -> None:
    what = "an image input" if kind == "image" else "an audio input (its log-mel " \
        "spectrogram, mel channels x frames, read as an image)"
    p.model_lines += [("family", "cnn", f"{what}: a convolutional network"),
                      ("blocks", [{"filters": 32, "pool": "max"}, {"filters": 64,
                                                                   "pool": "max"}],
                       "two conv blocks, each halving the image"),
                      ("dense", [128], ""), ("dropout", 0.2, "")]
    _train(p, 30 if n < 5000 else 10, 64, 1e-3, 1e-4, patience=5)


def _length(columns: str) -> int:
    """The number of columns of a range ``x0..x39``."""
    lo, hi = (int(re.findall(r"\d+$", s)[0]) for s in columns.split(".."))
    return hi - lo + 1


def _cnn1d(p: Proposal, n: int, length: int) -> None:
    """1-D convolutions along a series row: up to three blocks, each halving the steps
    (as long as 4 are left), widths doubling from 32; the feature map flattened, so the
    head knows where along the series a pattern was."""
    blocks: list[dict[str, Any]] = []
    steps = length
    while len(blocks) < 3 and steps // 2 >= 4:
        blocks.append({"filters": 32 * 2 ** len(blocks), "kernel": 5 if not blocks else 3,
                       "pool": "max"})
        steps //= 2
    if not blocks:
        blocks = [{"filters": 32, "kernel": 3}]
    p.model_lines += [("family", "cnn", f"a series of {length} steps per row: 1-D "
                       "convolutions along it"),
                      ("blocks", blocks, f"{len(blocks)} conv blocks over the steps"),
                      ("global_pool", "flatten", "keep where along the series a pattern is"),
                      ("dense", [128], ""), ("dropout", 0.2, "")]
    _train(p, 60 if n < 10_000 else 20, 64, 2e-3, 0.01, patience=10)


def _bag(p: Proposal, n: int, why: str) -> None:
    p.model_lines += [("family", "bag", f"{why}: words and hashed word pairs, averaged "
                       "(fastText-style), trains in seconds"),
                      ("embedding_dim", 32, ""), ("ngrams", 2, "words and word pairs"),
                      ("buckets", 16384, "hash buckets of the word pairs"),
                      ("dropout", 0.5, "it overfits within two epochs otherwise")]
    _train(p, 30 if n < 5000 else 10, 32 if n < 5000 else 64, 3e-3, 0.01, patience=3)


def _rnn(p: Proposal, n: int) -> None:
    p.model_lines += [("family", "rnn", f"{n:,} training rows of short text: a "
                       "bidirectional LSTM (it beat TF-IDF + logistic regression on tweets)"),
                      ("cell", "lstm", ""), ("embedding_dim", 96, ""), ("hidden", 96, ""),
                      ("bidirectional", True, ""), ("pooling", "max", ""),
                      ("dropout", 0.3, "")]
    _train(p, 6, 64, 2e-3, 0.01, patience=2)
    p.train_lines.insert(3, ("schedule", {"name": "cosine", "warmup_steps": 100},
                             "warm up, then decay: the recurrent stack trains steadier"))


def _train(p: Proposal, epochs: int, batch: int, lr: float, decay: float,
           patience: int) -> None:
    p.train_lines += [
        ("epochs", epochs, "an upper bound: early stopping ends the run sooner"),
        ("batch_size", batch, ""),
        ("optimizer", {"name": "adamw", "lr": lr, "weight_decay": decay}, ""),
        ("early_stopping", {"monitor": "val_loss", "patience": patience},
         "stop when validation loss stops improving; the best weights are kept")]


# ---------------------------------------------------------------------------- YAML


def _flow(v: Any) -> str:
    """A value as one line of YAML (JSON is YAML; keys of mappings left bare)."""
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_flow(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(_flow(x) for x in v) + "]"
    if isinstance(v, str) and _BARE.match(v) and v.lower() not in _YAML_WORDS:
        return v
    return json.dumps(v)


def _line(key: str, value: Any, comment: str, indent: str = "  ") -> str:
    text = f"{indent}{key}: {_flow(value)}"
    return f"{text:<40} # {comment}" if comment else text


def _item(feature: dict[str, Any], comment: str) -> str:
    text = f"  - {_flow(feature)}"
    return f"{text:<40} # {comment}" if comment else text


def _data_path(source: str, config_path: Path) -> str:
    data, folder = Path(source).resolve(), config_path.resolve().parent
    rel = os.path.relpath(data, folder)
    return str(data) if rel.startswith("..") else rel
