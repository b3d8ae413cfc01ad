"""``layerwise bench MODEL``: time every backend at batch 1, 8 and 64, and (``--autotune``)
record the fastest faithful one in the artifact for this machine.

How it measures (a shared machine is noisy; the method is what makes figures comparable):
each backend is built and warmed up first (compilation, export and the first calls are
not timed); then ``rounds`` rounds each time every (batch size, backend) pair for
``seconds_per_round``, the backends in a fresh seeded order each round, so a burst of
load from elsewhere falls on all of them alike. Medians and 99th percentiles are over all
the calls of a pair.

Faithful means: the guard's metric on the validation rows loses at most ``max_drop``
points against eager, and an fp32 backend (compiled, onnxruntime) also matches eager's
outputs within ``atol + rtol·|eager|``. The pick is the faithful backend with the lowest
median latency at ``for_batch``; it is stored under ``backends[<cpu model>]`` in
``layerwise.json`` with the timings, and the Predictor uses it by default on that CPU.
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from layerwise import artifact as art
from layerwise.compress import guard
from layerwise.data.batching import TensorData, take
from layerwise.errors import LayerwiseError
from layerwise.inference import backends as bk
from layerwise.inference.predictor import Predictor

BATCHES = (1, 8, 64)
EXACT = ("eager", "compiled", "onnxruntime")  # fp32: must match eager's outputs
FIDELITY_ROWS = 512


def _batch(data: TensorData, n: int) -> Any:
    return take(data.inputs, torch.arange(n) % len(data))


def _fidelity(pred: Predictor, ref: dict[str, torch.Tensor], rows: TensorData, metric: str,
              eager_score: float) -> dict[str, Any]:
    """Largest output difference from eager and the guard's metric through ``pred``."""
    sample = rows.subset(torch.arange(min(len(rows), FIDELITY_ROWS)))
    out = pred.forward(sample, 512)
    diff = max(float((out[k].float() - ref[k].float()).abs().max()) for k in ref)
    scale = max(float(ref[k].float().abs().max()) for k in ref)
    score = guard.score(pred, rows, metric) if pred.backend != "eager" else eager_score
    return {"max_abs_diff": diff, "output_scale": scale, metric: round(score, 3),
            "drop": round(eager_score - score, 3)}


def warm(pred: Predictor, rows: TensorData, batches: tuple[int, ...]) -> float:
    """Build the backend and run each batch size a few times; returns the seconds spent."""
    t0 = time.perf_counter()
    with torch.inference_mode():
        for b in batches:
            x = _batch(rows, b)
            for _ in range(3):
                pred._runner(x)
    return time.perf_counter() - t0


def time_calls(preds: dict[str, Predictor], rows: TensorData, batches: tuple[int, ...],
          rounds: int, seconds: float, seed: int) -> dict[str, dict[int, list[float]]]:
    """Per-call seconds of every (backend, batch) pair, interleaved over ``rounds``."""
    calls: dict[str, dict[int, list[float]]] = {n: {b: [] for b in batches} for n in preds}
    inputs = {b: _batch(rows, b) for b in batches}
    order = list(preds)
    rng = random.Random(seed)
    with torch.inference_mode():
        for _ in range(rounds):
            for b in batches:
                rng.shuffle(order)
                for name in order:
                    run, x, stop = preds[name]._runner, inputs[b], time.perf_counter() + seconds
                    while True:
                        t = time.perf_counter()
                        run(x)
                        now = time.perf_counter()
                        calls[name][b].append(now - t)
                        if now >= stop and len(calls[name][b]) >= 3:
                            break
    return calls


def summary(times: list[float], batch: int) -> dict[str, float]:
    med = float(np.median(times))
    return {"median_ms": round(med * 1e3, 4), "p99_ms": round(float(np.percentile(
        times, 99)) * 1e3, 4), "rows_per_s": round(batch / med, 1), "calls": len(times)}


def _eligible(name: str, fid: dict[str, Any], max_drop: float, atol: float,
              rtol: float) -> bool:
    if fid["drop"] > max_drop:
        return False
    return name not in EXACT or fid["max_abs_diff"] <= atol + rtol * fid["output_scale"]


def bench(model_dir: str | Path, *, names: tuple[str, ...] = bk.BACKENDS,
          batches: tuple[int, ...] = BATCHES, rounds: int = 5, seconds: float = 0.2,
          autotune: bool = False, for_batch: int = 64, max_drop: float = 0.5,
          atol: float = 1e-3, rtol: float = 1e-3, data: str | None = None,
          seed: int = 0) -> dict[str, Any]:
    """Time ``names`` on ``model_dir``; with ``autotune``, record the pick in it."""
    for n in names:
        bk.check_name(n)
    eager = Predictor.load(model_dir, backend="eager")
    rows = guard.validation_data(eager, data)
    metric = guard.main_metric(eager)
    ref = eager.forward(rows.subset(torch.arange(min(len(rows), FIDELITY_ROWS))), 512)
    eager_score = guard.score(eager, rows, metric)
    preds: dict[str, Predictor] = {}
    report: dict[str, dict[str, Any]] = {}
    for name in names:
        try:
            pred = Predictor(eager.artifact, name)
            spent = warm(pred, rows, batches)
            report[name] = {"warmup_s": round(spent, 2), **_fidelity(pred, ref, rows, metric,
                                                                    eager_score)}
            preds[name] = pred
        except (LayerwiseError, RuntimeError) as e:  # a backend this model cannot use
            report[name] = {"error": str(e).splitlines()[0][:300]}
    timed = time_calls(preds, rows, batches, rounds, seconds, seed)
    for name, per in timed.items():
        report[name]["batches"] = {b: summary(t, b) for b, t in per.items()}
        report[name]["eligible"] = _eligible(name, report[name], max_drop, atol, rtol)
    result = {"machine": bk.machine_key(), "kind": _kind(), "metric": metric,
              "threads": torch.get_num_threads(), "backends": report,
              "measured": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    result["pick"] = pick(report, for_batch)
    result["by_batch"] = {b: pick(report, b) for b in batches}
    if autotune:
        record(Path(model_dir), result, for_batch)
    return result


def pick(report: dict[str, dict[str, Any]], batch: int) -> str:
    """The eligible backend with the lowest median latency at ``batch`` (eager if none)."""
    timed = {n: r["batches"][batch]["median_ms"] for n, r in report.items()
             if r.get("eligible") and batch in r.get("batches", {})}
    return min(timed, key=lambda n: timed[n]) if timed else "eager"


def record(model_dir: Path, result: dict[str, Any], for_batch: int) -> None:
    """Store the pick (and what it was picked from) for this CPU model in the artifact."""
    kept = dict(art.read_header(model_dir).get("backends") or {})
    kept[result["machine"]] = {
        "kind": result["kind"], "pick": result["pick"], "for_batch": for_batch,
        "by_batch": {str(b): n for b, n in result["by_batch"].items()},
        "measured": result["measured"], "threads": result["threads"],
        "median_ms": {n: {str(b): s["median_ms"] for b, s in r.get("batches", {}).items()}
                      for n, r in result["backends"].items()}}
    art.update_meta(model_dir, {"backends": kept})


def _kind() -> str:
    from layerwise.training.hardware import cpu_kind

    return cpu_kind()
