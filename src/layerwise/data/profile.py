"""What a data file holds, column by column: the evidence ``layerwise init`` reads.

    >>> import numpy as np
    >>> from layerwise.data.table import Table
    >>> t = Table({"x": np.array(["1.5", "2", "3"], dtype=object),
    ...            "y": np.array(["Yes", "No", "Yes"], dtype=object)}, "demo.csv")
    >>> [(c.name, c.kind) for c in profile_table(t)]
    [('x', 'numeric'), ('y', 'binary')]

Each column gets one kind — ``numeric``, ``binary``, ``category``, ``text``, ``date``,
``image`` or ``audio`` (file paths), ``series`` (one of a run of numbered numeric columns,
``t0 … t149``, that make one series per row), ``id`` (a distinct short string per row) or
``constant`` — with the evidence for it: distinct values, missing cells, the share that parses as a
number or a date, the mean length in characters and in words. The rules are plain
thresholds, written once below, so that the table ``init`` prints explains each choice.
"""

from __future__ import annotations

import csv
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from layerwise.data.audio import clip_seconds
from layerwise.data.encoder import is_missing
from layerwise.data.sources import AUDIO_SUFFIXES, IMAGE_SUFFIXES, infer_format, read
from layerwise.data.table import Table
from layerwise.errors import DataError

PARSE_RATE = 0.98     # share of present cells that must parse for numeric / date
TEXT_WORDS = 4.0      # mean words per cell from which a string column is text
SERIES_RUN = 16       # numbered numeric columns from which a run is one series per row
_WORDS = re.compile(r"\w+|[^\w\s]", re.UNICODE)
_NUMBERED = re.compile(r"^(.*?)(\d+)$")


@dataclass
class ColumnProfile:
    """One column: its kind and the evidence for it."""

    name: str
    kind: str
    rows: int
    missing: int = 0
    distinct: int = 0
    numeric_rate: float = 0.0
    date_rate: float = 0.0
    mean_chars: float = 0.0
    mean_words: float = 0.0
    p95_words: int = 0
    integer: bool = False
    top: list[str] = field(default_factory=list)  # the most frequent values (up to 5)
    seconds: float = 0.0  # audio: the longest clip of a sample of up to 200

    def evidence(self) -> str:
        """The facts behind the kind, in a few words."""
        parts = [f"{self.distinct:,} distinct"]
        if self.missing:
            parts.append(f"{self.missing:,} missing")
        if self.kind in ("numeric", "series", "date") or self.numeric_rate:
            rate = self.date_rate if self.kind == "date" else self.numeric_rate
            parts.append(f"parse rate {rate:.0%}")
        if self.kind in ("text", "category", "id", "binary") and not self.numeric_rate:
            parts.append(f"mean {self.mean_chars:.0f} chars / {self.mean_words:.1f} words")
        if self.kind == "text":
            parts.append(f"p95 {self.p95_words} words")
        if self.kind in ("binary", "category") and self.top:
            parts.append("e.g. " + ", ".join(self.top[:3]))
        return "; ".join(parts)


FALLBACK_ENCODINGS = ("cp1252", "latin-1")  # tried in turn on a CSV / JSONL that is not UTF-8


def read_any(path: str | Path) -> tuple[Table, str, str, str]:
    """Read a file or folder for profiling: ``(table, format, delimiter, encoding)``. A
    CSV's delimiter is guessed from its first line; a text file that is not UTF-8 is read
    as cp1252 (Windows' Western European), else latin-1, which decodes any byte."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"data file not found: {p}")
    fmt = infer_format(p, None)
    delimiter = sniff_delimiter(p) if fmt == "csv" else ","
    if fmt not in ("csv", "jsonl") or _decodes(p, "utf-8-sig"):
        return read(p, fmt, delimiter=delimiter), fmt, delimiter, "utf-8"
    encoding = next(e for e in FALLBACK_ENCODINGS if e == "latin-1" or _decodes(p, e))
    return read(p, fmt, delimiter=delimiter, encoding=encoding), fmt, delimiter, encoding


def _decodes(path: Path, encoding: str) -> bool:
    try:
        path.read_bytes().decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


def sniff_delimiter(path: Path) -> str:
    """The one of ``, ; tab |`` that splits the first line most often (``,`` on a tie)."""
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as f:
        line = f.readline()
    counts = {d: len(next(csv.reader([line], delimiter=d), [])) for d in ",;\t|"}
    best = max(counts, key=lambda d: (counts[d], d == ","))
    return best if counts[best] > 1 else ","


def profile_table(table: Table) -> list[ColumnProfile]:
    """Every column's kind and evidence, series runs recognised across columns."""
    profiles = [profile_column(name, col) for name, col in table.columns.items()]
    _mark_series(profiles)
    return profiles


def profile_column(name: str, col: np.ndarray) -> ColumnProfile:
    """One column's evidence and kind (the rules of this module's docstring)."""
    present = [v for v in col if not is_missing(v)]
    texts = [str(v) for v in present]
    counts = Counter(texts)
    p = ColumnProfile(name, "constant", len(col), missing=len(col) - len(present),
                      distinct=len(counts), top=[v for v, _ in counts.most_common(5)])
    if not present:
        return p
    numbers = [_number(v) for v in present]
    ok = [x for x in numbers if x is not None]
    p.numeric_rate = len(ok) / len(present)
    p.integer = bool(ok) and all(float(x).is_integer() for x in ok)
    sample = texts[:5000]
    words = [len(_WORDS.findall(t)) for t in sample]
    p.mean_chars = float(np.mean([len(t) for t in sample]))
    p.mean_words = float(np.mean(words))
    p.p95_words = int(np.percentile(words, 95))
    if p.numeric_rate < PARSE_RATE:
        p.date_rate = sum(_is_date(t) for t in sample) / len(sample)
    p.kind = _kind(p, texts)
    if p.kind == "audio":
        p.seconds = clip_seconds(texts[:: max(1, len(texts) // 200)])
    return p


def _kind(p: ColumnProfile, texts: list[str]) -> str:
    if p.distinct <= 1:
        return "constant"
    if p.distinct == 2:
        return "binary"
    if p.numeric_rate >= PARSE_RATE:
        return "id" if _row_numbers(p, texts) else "numeric"
    if p.date_rate >= PARSE_RATE:
        return "date"
    if sum(Path(t).suffix.lower() in IMAGE_SUFFIXES for t in texts[:1000]) \
            >= PARSE_RATE * min(len(texts), 1000):
        return "image"
    if sum(Path(t).suffix.lower() in AUDIO_SUFFIXES for t in texts[:1000]) \
            >= PARSE_RATE * min(len(texts), 1000):
        return "audio"
    if p.mean_words >= TEXT_WORDS:
        return "text"
    present = p.rows - p.missing
    if p.distinct == present and present > 50:
        return "id"
    if p.distinct > max(50, present // 2):
        return "text"  # short but nearly unique strings: words, not classes
    return "category"


def _row_numbers(p: ColumnProfile, texts: list[str]) -> bool:
    """Whole numbers counting the rows (``0, 1, 2, …`` or from 1, an index written out
    with the table): an id, not a quantity."""
    if not p.integer or p.missing or p.distinct != p.rows or p.rows < 20:
        return False
    numbers = sorted(int(float(t)) for t in texts)
    return numbers[0] in (0, 1) and numbers[-1] - numbers[0] == p.rows - 1


def _number(v: Any) -> float | None:
    if isinstance(v, bool | np.bool_):
        return None
    if isinstance(v, int | float | np.integer | np.floating):
        return float(v)
    try:
        x = float(str(v).strip())
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def _is_date(text: str) -> bool:
    try:
        datetime.fromisoformat(text.strip())
    except ValueError:
        return False
    return True


def _mark_series(profiles: list[ColumnProfile]) -> None:
    """A run of at least ``SERIES_RUN`` numeric columns named ``<prefix><number>`` whose
    numbers count up from 0 or 1 is one series per row: each becomes kind ``series``."""
    runs: dict[str, list[tuple[int, ColumnProfile]]] = {}
    for p in profiles:
        m = _NUMBERED.match(p.name)
        if m and p.kind in ("numeric", "binary", "constant") and p.numeric_rate >= PARSE_RATE:
            runs.setdefault(m.group(1), []).append((int(m.group(2)), p))
    for members in runs.values():
        numbers = sorted(n for n, _ in members)
        if len(members) >= SERIES_RUN and numbers == list(range(numbers[0],
                                                                numbers[0] + len(numbers))):
            for _, p in members:
                p.kind = "series"


def series_prefix(name: str) -> str:
    """The prefix shared by a series run's column names (``t`` for ``t17``)."""
    m = _NUMBERED.match(name)
    return m.group(1) if m else name
