"""Config models of inputs that read many columns: entries that name columns by a glob,
range or list (expanded into one input per column, data/columns.py) and ``series`` rows
(one input over many columns, data/rows.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from layerwise.config.base import _Strict


class _Columns(_Strict):
    """An entry that may stand for many columns: ``columns`` (a glob ``"x*"``, a range
    ``x0..x39``, names, or a list of these; ``"*"`` for all remaining columns) becomes one
    input per matched column, with this entry's settings (data/columns.py). ``name`` is
    then optional: the spec, as error messages before the expansion quote it."""

    name: str = Field("", description="column name in the data (optional with columns)")
    columns: str | list[str] | None = Field(
        None, description="many columns at once: a glob (\"t*\"), a range (t0..t149), "
        "names, or a list of these; \"*\" is every column not used elsewhere")
    exclude: list[str] = Field(default_factory=list, description="names or globs removed "
                               "from what columns matched")

    @model_validator(mode="after")
    def _name_or_columns(self) -> _Columns:
        if self.columns is None:
            if not self.name:
                raise ValueError("give the column's name, or columns (a glob, range or list)")
            if self.exclude:
                raise ValueError("exclude needs columns")
        elif not self.name:
            spec = self.columns
            object.__setattr__(self, "name", spec if isinstance(spec, str)
                               else ",".join(spec))
        return self



class SeriesInput(_Strict):
    """A fixed-length row of numbers per sample (one series per row: ``t0 … t149``), read
    from many columns at once (data/rows.py); 1-D convolutions (cnn), recurrent (rnn) and
    transformer families read it as a sequence of scalars, mlp as numbers."""

    type: Literal["series"]
    name: str = Field(min_length=1, description="the input's name (not a column)")
    columns: str | list[str] = Field(description="the series' columns in order: a glob "
                                     "(\"t*\", table order), a range (t0..t149), names, or "
                                     "a list of these; \"*\": every column not used "
                                     "elsewhere")
    exclude: list[str] = Field(default_factory=list, description="names or globs removed "
                               "from what columns matched")
    normalize: Literal["global", "per_series", "none"] = Field(
        "global", description="global: one mean and std over every training value; "
        "per_series: each row standardised by its own mean and std (the shape, not the "
        "level); none: as found")
    missing: Literal["error", "interpolate"] = Field(
        "error", description="an empty cell: an error naming the row and column, or "
        "linear interpolation along the row (the nearest value at its ends)")
