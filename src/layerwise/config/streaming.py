"""How data that does not fit in memory streams: the in-memory budget and the loader.

``data.memory_budget`` decides the path (see layerwise.data.streaming): data whose encoded
size fits the budget is preloaded as today; larger data is encoded once into shards on disk
and streamed through a bounded-memory loader.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from layerwise.config.base import _Strict

_UNITS = {"": 2**20, "b": 1, "k": 2**10, "kb": 2**10, "kib": 2**10, "m": 2**20, "mb": 2**20,
          "mib": 2**20, "g": 2**30, "gb": 2**30, "gib": 2**30, "t": 2**40, "tb": 2**40,
          "tib": 2**40}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(value: int | float | str) -> int:
    """Bytes from ``64`` (MB), ``"64MB"``, ``"2GB"``, ``"512MiB"``, ``"1.5G"``.

    Units are binary (1 MB = 2**20 bytes), as memory is counted."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 64MB or 2GB")
    if isinstance(value, int | float):
        number, unit = float(value), ""
    else:
        m = _SIZE.match(value)
        if m is None or m.group(2).lower() not in _UNITS:
            raise ValueError("expected a size such as 64MB, 2GB or a number of MB")
        number, unit = float(m.group(1)), m.group(2).lower()
    size = int(number * _UNITS[unit])
    if size <= 0:
        raise ValueError("a memory budget must be positive")
    return size


class StreamConfig(_Strict):
    """The streaming path's settings (used only when the data streams)."""

    mode: Literal["auto", "memory", "stream"] = Field(
        "auto", description="auto: stream when the encoded data exceeds data.memory_budget; "
        "memory: always preload; stream: always stream (e.g. to test the path)")
    workers: int = Field(1, ge=0, description="loader worker processes (0: load in the "
                         "training process)")
    prefetch: int = Field(2, ge=1, description="batches each worker prepares ahead")
    cache: str | None = Field(None, description="folder of the encoded shards (default: "
                              "streams/ under $LAYERWISE_CACHE or ~/.cache/layerwise); reused "
                              "while the data, features and split are the same")
    fit_rows: int = Field(100_000, ge=1, description="encoders (scalers, vocabularies, image "
                          "statistics) are fitted on a seeded sample of at most this many "
                          "training rows (all of them when fewer), bounded by the budget too")
    shard_rows: int | None = Field(None, ge=1, description="rows per encoded shard (default: "
                                   "1/16 of the budget's worth of rows)")


def default_budget() -> int:
    """A quarter of the machine's memory (Linux); 2 GiB when unknown."""
    import os

    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")) // 4
    except (ValueError, OSError, AttributeError):
        return 2 * 2**30


def budget_bytes(value: int | str | None) -> int:
    """``data.memory_budget`` in bytes (a quarter of the machine's memory when unset)."""
    return parse_size(value) if value is not None else default_budget()


def _check(value: int | str | None) -> int | str | None:
    if value is not None:
        parse_size(value)
    return value


Budget = Annotated[int | str | None, AfterValidator(_check)]
