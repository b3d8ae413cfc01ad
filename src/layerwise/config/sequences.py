"""Config models of numeric series and token tags: ``timeseries`` inputs, ``forecast`` and
``tags`` outputs (see data/series.py and data/tags.py), and the checks that tie them to
the rest of a config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, model_validator

from layerwise.config.base import _Family, _Strict, either, families_for


class TimeseriesInput(_Strict):
    """Windows of a time-indexed table: the last ``lookback`` steps before each forecast.

    The rows are one series, ordered by ``time``. Channel 0 of a window is the forecast
    output's column (the series' own past); ``exogenous`` columns follow. The last
    ``test_steps`` steps are the test part, the ``validation_steps`` before them the
    validation part (chronological: the model never trains on the future).
    """

    type: Literal["timeseries"]
    name: str = Field(min_length=1, description="the input's name (not a column)")
    time: str = Field(min_length=1, description="the time (or order) column: dates "
                      "(YYYY-MM-DD, ...) or numbers")
    exogenous: list[str] = Field(default_factory=list, description="other numeric columns "
                                 "read over the same window (their past only)")
    lookback: int = Field(gt=0, description="steps of history in each window")
    stride: int = Field(1, gt=0, description="steps between training windows (validation "
                        "and test windows use every forecast origin)")
    test_steps: int = Field(0, ge=0, description="the last N steps are the test part")
    validation_steps: int = Field(0, ge=0, description="the N steps before the test part are "
                                  "the validation part")
    missing: Literal["error", "interpolate"] = Field(
        "error", description="an empty cell (NaN) in a series column: an error naming the row, "
        "or linear interpolation in time")
    gaps: Literal["error", "interpolate"] = Field(
        "error", description="a missing time step (e.g. a month absent from a monthly "
        "table): an error naming the row after the gap, or insert the step and interpolate")
    relative: bool = Field(True, description="express each window (and its forecast) "
                           "relative to the window's last target value, so a trending series "
                           "never leaves the range seen in training")


class ForecastOutput(_Strict):
    """The next ``horizon`` values of a numeric column, predicted from a timeseries input."""

    type: Literal["forecast"]
    name: str = Field(min_length=1, description="the numeric column forecast")
    input: str = Field(min_length=1, description="the timeseries input read")
    horizon: int = Field(1, gt=0, description="steps forecast at once")
    season: int | None = Field(None, gt=0, description="season length for the seasonal-naive "
                               "baseline and MASE (12 for monthly data); default 1 (naive)")
    loss: Literal["mse", "mae", "huber"] = "mse"
    loss_weight: float = Field(1.0, gt=0.0)


class TagsOutput(_Strict):
    """One tag per token of a text input (token classification: part of speech, entities).

    The column holds the tags separated by spaces, one per token of the input's tokenizer
    (``word`` or ``char``); a row whose counts differ is an error naming it.
    """

    type: Literal["tags"]
    name: str = Field(min_length=1, description="the column of space-separated tags")
    input: str = Field(min_length=1, description="the text input whose tokens are tagged")
    loss_weight: float = Field(1.0, gt=0.0)

    @model_validator(mode="after")
    def _distinct(self) -> TagsOutput:
        if self.name == self.input:
            raise ValueError(f"tags output {self.name!r}: the tags need their own column")
        return self


# what a tagging model may predict: one tags output, and heads over the pooled encoding
JOINT_OUTPUTS = ("tags", "category", "binary", "numeric")


def check_sequence_features(cfg: Any, families: Mapping[str, type[_Family]]) -> None:
    """Cross-feature rules of series and tags (called by ``Config``'s validator, with every
    family's config to suggest the ones that fit)."""
    series = [f for f in cfg.inputs if f.type == "timeseries"]
    forecasts = [o for o in cfg.outputs if o.type == "forecast"]
    tags = [o for o in cfg.outputs if o.type == "tags"]
    family = cfg.model.family
    if series or forecasts:
        if len(series) != 1 or len(cfg.inputs) != 1 or len(forecasts) != 1 or \
                len(cfg.outputs) != 1:
            raise ValueError("a forecasting config has one timeseries input and one forecast "
                             "output, nothing else (exogenous columns go in the input's "
                             f"exogenous list); got inputs {[f.type for f in cfg.inputs]}, "
                             f"outputs {[o.type for o in cfg.outputs]}")
        s, o = series[0], forecasts[0]
        if o.input != s.name:
            raise ValueError(f"outputs {o.name!r}: input must name the timeseries input "
                             f"{s.name!r}; got {o.input!r}")
        if o.name in s.exogenous or s.time in (o.name, *s.exogenous):
            raise ValueError(f"inputs {s.name!r}: time {s.time!r}, exogenous {s.exogenous} "
                             f"and the forecast column {o.name!r} must be distinct columns")
        if "timeseries" not in cfg.model.input_kinds:
            fits = families_for(families, ["timeseries"], [o.type])
            raise ValueError(f"model.family {family} cannot read a timeseries input; use "
                             f"{either(fits)}")
        if o.season and o.season > s.lookback:
            raise ValueError(f"outputs {o.name!r}: season {o.season} is longer than the "
                             f"input's lookback {s.lookback}; the seasonal-naive baseline "
                             "reads the last season of each window")
    if tags:
        texts = {f.name: f for f in cfg.inputs if f.type == "text"}
        others = [o.type for o in cfg.outputs if o.type not in JOINT_OUTPUTS]
        if len(tags) != 1 or others or series:
            raise ValueError("a model has at most one tags output, beside which it may "
                             f"predict {', '.join(JOINT_OUTPUTS[1:])} outputs from a shared "
                             "encoder (no timeseries inputs); got inputs "
                             f"{[f.type for f in cfg.inputs]}, outputs "
                             f"{[o.type for o in cfg.outputs]}")
        o = tags[0]
        if o.input not in texts:
            raise ValueError(f"outputs {o.name!r}: input must name a text input "
                             f"({sorted(texts)}); got {o.input!r}")
        if texts[o.input].tokenizer not in ("word", "char"):
            raise ValueError(f"outputs {o.name!r}: tags align with word or char tokens; input "
                             f"{o.input!r} uses tokenizer {texts[o.input].tokenizer!r}")
        if not cfg.model.accepts_output("tags"):
            raise ValueError(f"outputs {o.name!r}: tagging needs model.family rnn or a "
                             "transformer encoder (causal: false, pooling not cls)")
