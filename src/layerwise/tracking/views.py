"""Reading runs for people: nested configs and metrics as dotted keys, the differences
between runs' configs, metric deltas, filters and sort keys (``runs list|compare``)."""

from __future__ import annotations

import math
import operator
import re
from typing import Any

from layerwise.errors import ConfigError

MISSING = "—"


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c": [1, 2]}`` → ``{"a.b": 1, "c": [1, 2]}`` (lists stay whole)."""
    if not isinstance(d, dict):
        return {prefix: d} if prefix else {}
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        out.update(flatten(v, key) if isinstance(v, dict) else {key: v})
    return out


def number(v: Any) -> float | None:
    """A finite real number, or None (bools, strings, NaN are not numbers here)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v) if math.isfinite(v) else None


def final_scalars(run: dict[str, Any]) -> dict[str, float]:
    """The run's final metrics that are numbers, by dotted key (``test.accuracy``); the
    per-class results are left out (shown as their own table)."""
    return {k: x for k, v in flatten(run.get("metrics") or {}).items()
            if (x := number(v)) is not None and ".per_class." not in f".{k}"}


def value_of(run: dict[str, Any], key: str) -> Any:
    """A run's column (``name``, ``duration_s``, ...), else a final metric, else a config
    value (``config.train.optimizer.lr``)."""
    if key in run and not isinstance(run[key], dict):
        return run[key]
    if key.startswith("config."):
        return flatten(run.get("config") or {}).get(key.removeprefix("config."))
    return flatten(run.get("metrics") or {}).get(key)


def config_diff(runs: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The config keys whose values differ between the runs, each with every run's value."""
    flat = [flatten(r.get("config") or {}) for r in runs]
    keys = sorted(set().union(*flat))
    return {k: [f.get(k, MISSING) for f in flat] for k in keys
            if len({repr(f.get(k, MISSING)) for f in flat}) > 1}


def metric_deltas(runs: list[dict[str, Any]]) -> dict[str, tuple[list[float | None],
                                                                 list[float | None]]]:
    """Each final metric any run has: every run's value and its difference from the first
    run's (None where a run lacks it)."""
    flat = [final_scalars(r) for r in runs]
    out = {}
    for k in sorted(set().union(*flat)):
        vals = [f.get(k) for f in flat]
        base = vals[0]
        out[k] = (vals, [None if v is None or base is None else v - base for v in vals])
    return out


_OPS = {">=": operator.ge, "<=": operator.le, "!=": operator.ne, ">": operator.gt,
        "<": operator.lt, "=": operator.eq}
_WHERE = re.compile(r"^\s*([\w./-]+)\s*(>=|<=|!=|>|<|=)\s*(.+?)\s*$")


def parse_where(text: str) -> tuple[str, Any, Any]:
    """``test.accuracy>0.9`` → (key, comparison, value); a ConfigError naming the text."""
    m = _WHERE.match(text)
    if not m:
        raise ConfigError(f"--where {text!r}: expected KEY OP VALUE with OP one of "
                          f"{', '.join(_OPS)} (e.g. test.accuracy>0.9)")
    key, op, raw = m.groups()
    try:
        value: Any = float(raw)
    except ValueError:
        value = raw
    return key, _OPS[op], value


def matches(run: dict[str, Any], where: list[tuple[str, Any, Any]]) -> bool:
    for key, op, value in where:
        have = value_of(run, key)
        if have is None:
            return False
        try:
            if not op(float(have) if isinstance(value, float) else str(have), value):
                return False
        except (TypeError, ValueError):
            return False
    return True


def sort_runs(runs: list[dict[str, Any]], key: str, descending: bool) -> list[dict[str, Any]]:
    """Runs by ``key`` (see :func:`value_of`); runs without it go last either way."""
    have = [r for r in runs if value_of(r, key) is not None]
    lack = [r for r in runs if value_of(r, key) is None]
    try:
        have.sort(key=lambda r: value_of(r, key), reverse=descending)
    except TypeError:  # mixed kinds: compare as text
        have.sort(key=lambda r: str(value_of(r, key)), reverse=descending)
    return have + lack


def fmt(v: Any) -> str:
    if v is None:
        return MISSING
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def signed(d: float | None) -> str:
    """A difference with its sign (``+0.012``)."""
    return MISSING if d is None else f"{d:+.4g}"
