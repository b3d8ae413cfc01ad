"""The base of every feature type's encoder, and the checks they share.

An encoder turns one raw column into tensors and back: ``parse`` checks the column and
reports bad rows, ``fit`` learns statistics on the training split, ``transform`` makes
tensors, ``state`` / ``load_state`` move the fitted state as plain JSON. Each feature type
subclasses :class:`Encoder` in its own module; data/features.py lists them all.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from layerwise.data.table import Table
from layerwise.errors import ConfigError, DataError

_MISSING_TEXT = {"", "na", "nan", "null", "none"}


def is_missing(v: Any) -> bool:
    if v is None or type(v).__name__ in ("NAType", "NaTType"):  # pandas.NA / NaT
        return True
    if isinstance(v, float | np.floating):
        return bool(np.isnan(v))
    if isinstance(v, str):
        return v.strip().lower() in _MISSING_TEXT
    return False


def plain(v: Any) -> Any:
    """A JSON-friendly Python scalar for a numpy scalar."""
    return v.item() if isinstance(v, np.generic) else v


def no_bad_rows(n: int) -> tuple[np.ndarray, list[str]]:
    """The start of a ``parse``: a bad-row mask of ``n`` rows, none bad, and no reasons."""
    return np.zeros(n, dtype=bool), []


def unlinked(enc: Any, what: str) -> ConfigError:
    """The error for an encoder used before the schema linked it to the input it reads
    (``Schema.from_config`` links them; an encoder built by hand must be linked too)."""
    return ConfigError(f"{enc.name!r} is not linked to its {what} yet; build the encoders "
                       "with Schema.from_config")


class Encoder:
    """Base class: subclasses set ``kind`` and implement parse/fit/transform/state."""

    kind = ""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.name: str = cfg.name

    # -- checking ---------------------------------------------------------------------
    def parse(self, col: np.ndarray, table: Table) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Return (values, bad mask, reasons for bad rows) for a raw column."""
        raise NotImplementedError

    def check(self, col: np.ndarray, table: Table) -> np.ndarray:
        """Parse and raise a DataError naming the first bad row."""
        values, bad, reasons = self.parse(col, table)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"{table.where(i, self.name)}: {reasons[0]}")
        return values

    # -- fitting ----------------------------------------------------------------------
    def fit(self, values: np.ndarray) -> None:
        raise NotImplementedError

    def transform(self, values: np.ndarray) -> torch.Tensor:
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def reference(self, values: np.ndarray) -> dict[str, Any]:
        """Training-data statistics for drift monitoring."""
        return {}


def resolve_path(path: str, origin: str) -> str:
    """A relative file path in a data file (an image, a sound) is relative to that file's
    folder; an absolute or existing path, or one found nowhere, is returned as given."""
    from pathlib import Path

    p = Path(path)
    if p.is_absolute() or p.exists():
        return path
    base = Path(origin)
    candidate = (base if base.is_dir() else base.parent) / p
    return str(candidate) if base.exists() and candidate.exists() else path
