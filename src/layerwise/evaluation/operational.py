"""Operational metrics of a loaded model on this machine: latency, throughput, size, cost.

- **latency** at batch 1: one row at a time through the model and the decoding of its
  outputs (``Predictor.forward`` + ``decode``, from already encoded rows: parsing raw input
  is the caller's and not timed), after a warm-up; p50 / p95 / p99 in milliseconds.
- **throughput** at batch 64: rows per second over repeated batches of 64 rows.
- **cost per 1,000 predictions**: the CPU-seconds this process spends per 1,000 rows at
  batch 64 (all its threads, from ``time.process_time``), the wall-clock seconds, and, when
  an hourly price of the machine is given, that price times the wall-clock hours (a
  machine rented by the hour costs its time, busy or not).
- **size**: the weights file's bytes and the number of parameters.

The numbers are measured, not modelled: on a shared machine they move with its load, so
the machine kind, CPU, threads and the load average are recorded beside them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from layerwise.data.batching import TensorData
from layerwise.errors import ConfigError
from layerwise.inference.predictor import Predictor
from layerwise.training.hardware import cpu_kind, cpu_model

WARMUP = 5


def _timed(pred: Predictor, data: TensorData) -> float:
    start = time.perf_counter()
    pred.decode(pred.forward(data, batch_size=len(data)), data.inputs)
    return time.perf_counter() - start


def latency(pred: Predictor, data: TensorData, rows: int = 200) -> dict[str, float]:
    """Milliseconds per single-row prediction over ``rows`` rows (cycled if fewer)."""
    n = len(data)
    one = [data.subset(torch.tensor([i % n])) for i in range(rows + WARMUP)]
    times = [_timed(pred, d) for d in one][WARMUP:]
    ms = np.array(times) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()),
            "calls": rows}


def throughput(pred: Predictor, data: TensorData, batch: int = 64, batches: int = 50,
               price_per_hour: float | None = None) -> dict[str, Any]:
    """Rows per second at ``batch`` rows per call, and the cost per 1,000 rows."""
    n = len(data)
    chunks = [data.subset(torch.arange(s, s + batch) % n)
              for s in range(0, batch * (batches + 1), batch)]
    _timed(pred, chunks[0])  # warm-up
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for c in chunks[1:]:
        _timed(pred, c)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    done = batch * batches
    out: dict[str, Any] = {"batch": batch, "rows": done,
                           "rows_per_second": done / wall,
                           "cpu_seconds_per_1000": cpu / done * 1000,
                           "wall_seconds_per_1000": wall / done * 1000}
    if price_per_hour is not None:
        out["price_per_hour"] = price_per_hour
        out["cost_per_1000"] = price_per_hour * out["wall_seconds_per_1000"] / 3600
    return out


def measure(pred: Predictor, data: TensorData, *, price_per_hour: float | None = None,
            latency_rows: int = 200, batches: int = 50) -> dict[str, Any]:
    """Everything above for ``pred`` on rows of ``data``."""
    if price_per_hour is not None and not price_per_hour >= 0:
        raise ConfigError(f"--price-per-hour must be a number >= 0; got {price_per_hour}")
    if len(data) == 0:
        raise ConfigError("operational metrics need at least one row")
    weights = Path(pred.artifact.path) / "model.safetensors"
    return {
        "latency_batch_1": latency(pred, data, latency_rows),
        "throughput_batch_64": throughput(pred, data, 64, batches, price_per_hour),
        "size": {"weights_bytes": weights.stat().st_size if weights.is_file() else None,
                 "parameters": sum(p.numel() for p in pred.model.parameters())},
        "machine": {"kind": cpu_kind(), "cpu": cpu_model(), "cpus": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(),
                    "load_average_1min": os.getloadavg()[0]},
    }
