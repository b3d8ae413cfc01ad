"""A column-oriented table with provenance, so errors can name file, row and column."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

import numpy as np

from layerwise.errors import DataError


@dataclass
class Table:
    """Columns of equal length, plus where each row came from.

    ``lines[i]`` is the 1-based line (or record) of row ``i`` in ``origin``; messages say
    ``"{origin}, line {lines[i]}, column {name!r}"``.
    """

    columns: dict[str, np.ndarray]
    origin: str
    lines: np.ndarray = field(default=None)  # type: ignore[assignment]
    unit: str = "row"  # "line" for text files, "row" for arrays and parquet
    # the file of each row when the table joins several (a sharded source); else None
    files: np.ndarray | None = None

    def __post_init__(self) -> None:
        lengths = {k: len(v) for k, v in self.columns.items()}
        if len(set(lengths.values())) > 1:
            raise DataError(f"{self.origin}: columns have different lengths: {lengths}")
        if self.lines is None:
            self.lines = np.arange(1, len(self) + 1)

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def column(self, name: str) -> np.ndarray:
        if name not in self.columns:
            close = difflib.get_close_matches(name, list(self.columns), n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise DataError(f"{self.origin}: missing column {name!r}{hint} (columns: "
                            f"{', '.join(map(repr, list(self.columns)[:30]))})")
        return self.columns[name]

    def where(self, i: int, column: str | None = None) -> str:
        """Human words for the location of row ``i`` (and a column)."""
        origin = self.origin if self.files is None else self.files[i]
        text = f"{origin}, {self.unit} {int(self.lines[i])}"
        return f"{text}, column {column!r}" if column is not None else text

    def take(self, idx: np.ndarray) -> Table:
        return Table({k: v[idx] for k, v in self.columns.items()}, self.origin,
                     self.lines[idx], self.unit,
                     None if self.files is None else self.files[idx])

    @staticmethod
    def concat(parts: list[Table]) -> Table:
        if len(parts) == 1:
            return parts[0]
        keys = list(parts[0].columns)
        for p in parts[1:]:  # shards of one source hold the same columns
            if set(p.columns) != set(keys):
                raise DataError(f"{p.origin}: columns {list(p.columns)} differ from "
                                f"{parts[0].origin}'s {keys}")
        files = None
        if any(p.files is not None or p.origin != parts[0].origin for p in parts):
            files = np.concatenate([p.files if p.files is not None else
                                    np.full(len(p), p.origin, dtype=object) for p in parts])
        return Table({k: np.concatenate([p.columns[k] for p in parts]) for k in keys},
                     parts[0].origin, np.concatenate([p.lines for p in parts]), parts[0].unit,
                     files)
