"""``precision: auto`` by measurement: time the model's own step in fp32 and in bf16.

CPU flags only say whether bf16 *can* be fast (AMX, AVX512_BF16). Whether it *is* depends
on the model: a small MLP's step is dominated by element-wise work and Python, where bf16
casts cost more than they save; a CNN's convolutions run 1.7x faster. So on first use the
Trainer times one forward + backward of a copy of the model on the first batch, fp32 and
bf16 interleaved, within about a second, and keeps bf16 only if it is faster by
:data:`MARGIN`. The result is cached per machine (CPU model, torch version, threads) and
model signature, so later runs of the same model on the same machine make the same choice
without timing again (and so train the same weights), and it is recorded in the run.

    >>> import torch
    >>> net = torch.nn.Linear(8, 2)
    >>> x, y = torch.randn(16, 8), torch.randint(0, 2, (16,))
    >>> step = lambda m: torch.nn.functional.cross_entropy(m(x), y)
    >>> r = time_precisions(net, step, torch.device("cpu"), budget=0.05)
    >>> sorted(r)
    ['bf16_ms', 'fp32_ms', 'pairs', 'speedup']
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from layerwise.files import atomic_write, cache_root
from layerwise.training import hardware
from layerwise.training.hardware import cpu_kind, cpu_model

MARGIN = 1.15      # bf16 must be this many times faster than fp32 to be chosen
BUDGET = 0.5       # seconds of timing, warm-ups included (the issue allows 1 s)
CACHE = "precision.json"


def signature(model: nn.Module, batch: Any, threads: int) -> str:
    """What the timing depends on: the machine, torch, threads, the model and its input."""
    shapes: list[Any] = [type(model).__name__, threads]
    shapes += [(n, tuple(p.shape), str(p.dtype)) for n, p in model.named_parameters()]
    shapes.append(_shapes(batch))
    key = json.dumps({"cpu": cpu_model(), "kind": cpu_kind(), "torch": str(torch.__version__),
                      "model": shapes}, sort_keys=True, default=str)
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def _shapes(tree: Any) -> Any:
    if isinstance(tree, torch.Tensor):
        return [list(tree.shape), str(tree.dtype)]
    if isinstance(tree, dict):
        return {k: _shapes(v) for k, v in sorted(tree.items())}
    if isinstance(tree, list | tuple):
        return [_shapes(v) for v in tree]
    return type(tree).__name__


def time_precisions(model: nn.Module, step: Callable[[nn.Module], torch.Tensor],
                    device: torch.device, budget: float = BUDGET) -> dict[str, Any]:
    """Median ms of ``step(m)`` + backward in fp32 and under bf16 autocast, interleaved.

    Runs on a deep copy (BatchNorm statistics, gradients and the global RNG of the real
    model are left as they were). One untimed warm-up each (oneDNN builds its bf16 kernels
    on first use), then pairs in alternating order until ``budget`` seconds have passed
    (at least one pair, at most 9).
    """
    twin = copy.deepcopy(model)
    twin.train()

    def once(low: bool) -> float:
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=low):
            loss = step(twin)
        loss.float().backward()
        for p in twin.parameters():
            p.grad = None
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    times: dict[bool, list[float]] = {False: [], True: []}
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        once(False)
        once(True)
        pairs = 0
        while pairs < 9 and (pairs == 0 or time.perf_counter() - start < budget):
            for low in (pairs % 2 == 0, pairs % 2 == 1):
                times[low].append(once(low))
            pairs += 1
    fp32, bf16 = statistics.median(times[False]), statistics.median(times[True])
    return {"fp32_ms": round(fp32 * 1e3, 3), "bf16_ms": round(bf16 * 1e3, 3),
            "speedup": round(fp32 / bf16, 3) if bf16 > 0 else 0.0, "pairs": pairs}


def choose_precision(model: nn.Module, step: Callable[[nn.Module], torch.Tensor],
                     batch: Any, device: torch.device, threads: int,
                     cache: Path | None = None) -> tuple[str, str, dict[str, Any]]:
    """(precision, reason, probe record) for a CPU where bf16 is a candidate."""
    key = signature(model, batch, threads)
    path = cache or cache_root() / CACHE
    known = _read(path)
    if key in known:
        record = {**known[key], "cached": True}
    else:
        record = {**time_precisions(model, step, device), "cached": False,
                  "threads": threads, "cpu": cpu_model(), "torch": str(torch.__version__)}
        known[key] = {k: v for k, v in record.items() if k != "cached"}
        _write(path, known)
    speedup = record["speedup"]
    timing = (f"{record['fp32_ms']:.3g} ms fp32 vs {record['bf16_ms']:.3g} ms bf16 per step"
              f"{' (cached)' if record['cached'] else ''}")
    if speedup >= MARGIN:
        return "bf16", f"bf16 is {speedup:.2f}x faster here: {timing}", record
    return "fp32", f"bf16 is not clearly faster here ({speedup:.2f}x): {timing}", record


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(path: Path, data: dict[str, Any]) -> None:
    try:
        atomic_write(path, lambda f: f.write(json.dumps(data, indent=1,
                                                        sort_keys=True).encode()))
    except OSError:  # a read-only cache folder: the choice is still made and recorded
        pass


def settle(c: Any, cfg: Any, model: nn.Module, batch: Any, device: torch.device,
           step: Callable[[nn.Module], torch.Tensor]) -> None:
    """Settle the threads and precision of a new run on its first batch, in place.

    ``c`` holds the flag-based choices (:func:`layerwise.training.hardware.choose`);
    ``step(model)`` is the run's training step on ``batch`` (forward and loss).
    """
    cpu = device.type == "cpu"
    timed = cfg.precision == "auto" and c.precision == "bf16" and cpu
    flops = hardware.forward_flops(model, lambda: model(batch[0])) \
        if cpu and (cfg.threads is None or timed) else math.inf
    if cfg.threads is None and cpu:
        big = flops >= hardware.SMALL_MODEL_FLOPS and c.threads > 1
        free = hardware.idle_cores() if big else None
        c.threads, c.reasons["threads"] = hardware.threads_for(flops, c.threads, free)
        c.probe["idle_cores"] = None if free is None else round(free, 2)
    torch.set_num_threads(c.threads)
    if timed and flops < hardware.SMALL_MODEL_FLOPS:
        c.precision = "fp32"
        c.reasons["precision"] = (f"small model ({flops / 1e6:.2g} MFLOP per forward "
                                  "batch): bf16 casts cost more than they save")
    elif timed:
        c.precision, c.reasons["precision"], c.probe["precision"] = choose_precision(
            model, step, batch, device, c.threads)
    if c.precision == "fp16" and getattr(model, "phases", ()):
        c.precision = "fp32"
        c.reasons["precision"] = ("fp16 needs a gradient scaler, which phased training "
                                  "does not run: fp32")
    if c.precision != "fp32" and cfg.precision == "auto":
        check_agreement(c, model, step, device)


def check_agreement(c: Any, model: nn.Module, step: Callable[[nn.Module], torch.Tensor],
                    device: torch.device) -> None:
    """Keep a reduced precision only if one batch's loss agrees with fp32 within 5%."""
    with torch.random.fork_rng(devices=[]):
        was = model.training
        model.eval()
        with torch.no_grad():
            ref = float(step(model))
            with torch.autocast(device.type, dtype=c.autocast_dtype):
                low = float(step(model))
        model.train(was)
    if not math.isfinite(low) or abs(low - ref) > 0.05 * max(1e-3, abs(ref)):
        c.reasons["precision"] = (f"{c.precision} loss {low:.4g} differs from fp32 "
                                  f"{ref:.4g} on the first batch: kept fp32")
        c.precision = "fp32"
