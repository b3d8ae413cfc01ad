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
from layerwise.compress import bench_lm, guard
from layerwise.data.batching import TensorData, take
from layerwise.errors import LayerwiseError
from layerwise.inference import backends as bk
from layerwise.inference.predictor import Predictor

BATCHES = (1, 8, 64)
EXACT = ("eager", "compiled", "onnxruntime")  # fp32: must match eager's outputs
FIDELITY_ROWS = 512
LM_MAX_BATCH = 8    # a language model generates at batch 1 and 8 (rows side by side)
LM_TOKENS = 32      # tokens per timed generation


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
            "drop": round(guard.loss_of(metric, eager_score, score), 4)}


def warm(pred: Predictor, rows: TensorData, batches: tuple[int, ...]) -> float:
    """Build the backend and run each batch size a few times; returns the seconds spent."""
    t0 = time.perf_counter()
    with torch.inference_mode():
        for b in batches:
            x = _batch(rows, b)
            for _ in range(3):
                pred._runner(x)
    return time.perf_counter() - t0


Rounds = dict[str, dict[int, list[list[float]]]]  # backend → batch → per round: call times


def time_rounds(preds: dict[str, Predictor], rows: TensorData, batches: tuple[int, ...],
                rounds: int, seconds: float, seed: int) -> tuple[Rounds, Rounds]:
    """Per-call seconds of every (backend, batch) pair, round by round: each round times
    every pair for ``seconds`` (at least 3 calls), in a fresh seeded order per batch.
    Returns wall-clock times and the process's CPU times of the same calls."""
    wall: Rounds = {n: {b: [] for b in batches} for n in preds}
    cpu: Rounds = {n: {b: [] for b in batches} for n in preds}
    inputs = {b: _batch(rows, b) for b in batches}
    order = list(preds)
    rng = random.Random(seed)
    with torch.inference_mode():
        for _ in range(rounds):
            for b in batches:
                rng.shuffle(order)
                for name in order:
                    w, c = _timed(preds[name]._runner, inputs[b], seconds)
                    wall[name][b].append(w)
                    cpu[name][b].append(c)
    return wall, cpu


def _timed(run: Any, x: Any, seconds: float) -> tuple[list[float], list[float]]:
    wall: list[float] = []
    cpu: list[float] = []
    stop = time.perf_counter() + seconds
    while True:
        t, c = time.perf_counter(), time.process_time()
        run(x)
        now, c_now = time.perf_counter(), time.process_time()
        wall.append(now - t)
        cpu.append(c_now - c)
        if now >= stop and len(wall) >= 3:
            return wall, cpu


def time_calls(preds: dict[str, Predictor], rows: TensorData, batches: tuple[int, ...],
               rounds: int, seconds: float, seed: int) -> dict[str, dict[int, list[float]]]:
    """Per-call seconds of every (backend, batch) pair, interleaved over ``rounds``."""
    timed, _ = time_rounds(preds, rows, batches, rounds, seconds, seed)
    return {n: {b: [t for r in per_round for t in r] for b, per_round in per.items()}
            for n, per in timed.items()}


def relative(timed: Rounds, ref: str = "eager") -> dict[str, dict[int, float]]:
    """Per backend and batch: the median over rounds of its median call time divided by
    ``ref``'s in the same round. Load that comes and goes between rounds falls on both
    sides of each ratio, so these compare backends better than medians over all calls."""
    if ref not in timed:
        return {}
    out: dict[str, dict[int, float]] = {}
    for name, per in timed.items():
        out[name] = {b: round(float(np.median([np.median(r) / np.median(e) for r, e in zip(
            rs, timed[ref][b], strict=True)])), 4) for b, rs in per.items()}
    return out


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
          batches: tuple[int, ...] = BATCHES, rounds: int = 9, seconds: float = 0.2,
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
    lm = bench_lm.is_language_model(eager)
    if lm:  # a language model is timed generating: one cached step per token
        batches = tuple(b for b in batches if b <= LM_MAX_BATCH) or (1,)
        for_batch = for_batch if for_batch in batches else batches[0]
    preds: dict[str, Predictor] = {}
    report: dict[str, dict[str, Any]] = {}
    for name in names:
        try:
            pred = Predictor(eager.artifact, name)
            spent = bench_lm.warm(pred, rows, batches) if lm else warm(pred, rows, batches)
            report[name] = {"warmup_s": round(spent, 2), **_fidelity(pred, ref, rows, metric,
                                                                    eager_score)}
            preds[name] = pred
        except (LayerwiseError, RuntimeError) as e:  # a backend this model cannot use
            report[name] = {"error": str(e).splitlines()[0][:300]}
    if lm:
        _generation(report, preds, rows, batches, rounds, seconds, seed)
    else:
        _timings(report, *time_rounds(preds, rows, batches, rounds, seconds, seed))
    for name in preds:
        report[name]["eligible"] = _eligible(name, report[name], max_drop, atol, rtol)
    result = {"machine": bk.machine_key(), "kind": _kind(), "metric": metric,
              "threads": torch.get_num_threads(), "backends": report,
              "measured": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    result["pick"] = pick(report, for_batch)
    result["by_batch"] = {b: pick(report, b) for b in batches}
    if autotune:
        record(Path(model_dir), result, for_batch)
    return result


def _timings(report: dict[str, dict[str, Any]], wall: Rounds, cpu: Rounds) -> None:
    """Wall-clock medians and p99 per batch size, the median CPU time per call, and
    ``vs_eager``: the paired ratio (:func:`relative`) of CPU times when torch runs one
    thread (then a call's CPU time is its cost without the waits for a core that a shared
    machine adds), else of wall-clock times."""
    one = torch.get_num_threads() == 1
    ratios = relative(cpu if one else wall)
    for name, per in wall.items():
        report[name]["batches"] = {b: {
            **summary([t for r in rs for t in r], b),
            "cpu_ms": round(float(np.median([t for r in cpu[name][b] for t in r])) * 1e3, 4),
            "vs_eager": ratios.get(name, {}).get(b)} for b, rs in per.items()}
    for name in wall:
        report[name]["ratio_clock"] = "cpu" if one else "wall"


def _generation(report: dict[str, dict[str, Any]], preds: dict[str, Predictor],
                rows: TensorData, batches: tuple[int, ...], rounds: int, seconds: float,
                seed: int) -> None:
    """A language model's timings are of generation (``batches``: ms per step, tokens/s);
    its drop is the larger of the forward pass's and the decoding step's loss rise."""
    gen = bench_lm.report(preds, rows, batches, rounds, LM_TOKENS, seed, seconds)
    base = gen["eager"]["step_nats_per_token"] if "eager" in gen else None
    for name, g in gen.items():
        report[name]["batches"] = g.pop("generation")
        report[name].update(g)
        if base is not None:
            report[name]["drop"] = round(max(report[name]["drop"],
                                             g["step_nats_per_token"] - base), 4)


def pick(report: dict[str, dict[str, Any]], batch: int) -> str:
    """The eligible backend fastest at ``batch`` (eager if none): by its paired per-round
    ratio to eager where measured (see :func:`relative`), else by median latency."""
    timed = {n: r["batches"][batch] for n, r in report.items()
             if r.get("eligible") and batch in r.get("batches", {})}
    if not timed:
        return "eager"
    key = "vs_eager" if all(t.get("vs_eager") is not None for t in timed.values()) \
        else "median_ms"
    return min(timed, key=lambda n: timed[n][key])


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
