"""Choose precision, memory format, batching path and device from the hardware and model.

Every choice is returned with its reason and recorded in the run; every choice can be
overridden in ``train`` (``precision: fp32``, ``memory_format: contiguous``, ...).
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags (Linux /proc/cpuinfo); empty elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_kind(flags: frozenset[str] | None = None) -> str:
    """The machine kind as far as training numerics and speed go, from the CPU flags.

    ``amx``: AMX tiles (bf16 matrix products far faster than fp32); ``avx512_bf16``: native
    bf16 dot products (e.g. AMD Zen 4); ``avx2``: bf16 is emulated (e.g. Zen 3), far slower
    than fp32; ``unknown`` where the flags cannot be read.
    """
    flags = cpu_flags() if flags is None else flags
    if "amx_bf16" in flags:
        return "amx"
    if "avx512_bf16" in flags:
        return "avx512_bf16"
    if "avx2" in flags:
        return "avx2"
    return "unknown"


def low_precision_candidate(device: torch.device) -> tuple[str | None, str]:
    """The reduced precision worth trying here (or None), and why.

    On a CPU with native bf16 (AMX or AVX512_BF16) bf16 is only a *candidate*: the Trainer
    times the model's own step in both precisions (:mod:`layerwise.training.probe`) and
    keeps bf16 only where it is clearly faster. Without native bf16 it is emulated (87x
    slower than fp32 on a matmul on Zen 3), so it is not even timed.
    """
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "CUDA device supports bf16"
        return "fp16", "CUDA device lacks bf16: fp16 autocast with a gradient scaler"
    kind = cpu_kind()
    if kind == "amx":
        return "bf16", "CPU has AMX (amx_bf16)"
    if kind == "avx512_bf16":
        return "bf16", "CPU has AVX512_BF16"
    return None, ("CPU has no AMX/AVX512_BF16: bf16 would be emulated and slower than fp32"
                  if kind != "unknown" else "CPU features unknown: fp32 is the safe choice")


def has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d | nn.Conv1d | nn.Conv3d) for m in model.modules())


@dataclass
class Choices:
    device: str
    precision: str
    memory_format: str
    batching: str
    threads: int
    reasons: dict[str, str]
    probe: dict[str, Any] = field(default_factory=dict)  # the timings behind the choices

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Choices:
        return cls(d["device"], d["precision"], d["memory_format"], d["batching"],
                   int(d["threads"]), dict(d.get("reasons", {})), dict(d.get("probe", {})))


def choose(cfg: Any, model: nn.Module, data_bytes: int) -> Choices:
    """Resolve the ``auto`` settings of a TrainConfig for this machine and model."""
    reasons: dict[str, str] = {}
    if cfg.device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
        reasons["device"] = "CUDA available" if device == "cuda" else "no CUDA device"
    else:
        device, reasons["device"] = cfg.device, "set in config"
    threads = cfg.threads or cores()
    reasons["threads"] = "set in config" if cfg.threads else f"all {threads} cores"

    if cfg.precision == "auto":
        # a CPU candidate is confirmed or dropped by the Trainer's timing probe
        low, why = low_precision_candidate(torch.device(device))
        precision, reasons["precision"] = low or "fp32", why
    else:
        precision, reasons["precision"] = cfg.precision, "set in config"

    if cfg.memory_format == "auto":
        conv = has_conv(model)
        memory_format = "channels_last" if conv else "contiguous"
        reasons["memory_format"] = ("model has convolutions: channels_last lets oneDNN skip "
                                    "layout reorders" if conv else "no convolutions")
    else:
        memory_format, reasons["memory_format"] = cfg.memory_format, "set in config"

    if cfg.batching == "auto":
        budget = _memory_budget()
        batching = "memory" if data_bytes <= budget else "loader"
        reasons["batching"] = (f"data ({data_bytes / 2**20:.0f} MiB) fits in memory: batches are "
                               "index slices of preloaded tensors" if batching == "memory" else
                               f"data ({data_bytes / 2**20:.0f} MiB) exceeds the in-memory budget")
    else:
        batching, reasons["batching"] = cfg.batching, "set in config"
    return Choices(device, precision, memory_format, batching, int(threads), reasons)


def cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# Below this many floating-point operations per forward pass, one thread beats several:
# each parallel region costs microseconds of synchronisation, and when other processes
# share the cores, waiting threads stall every op (measured: a 13-32-16-3 MLP ran 70x
# slower on 2 threads than on 1 on a loaded 2-core machine).
SMALL_MODEL_FLOPS = 20e6


def forward_flops(model: nn.Module, run: Any) -> float:
    """Floating-point operations of one forward pass (counted, not timed: deterministic)."""
    from torch.utils.flop_counter import FlopCounterMode

    was = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            run()
        return float(counter.get_total_flops())
    except Exception:  # an op the counter cannot trace: assume the model is not small
        return float("inf")
    finally:
        model.train(was)


def threads_for(flops: float, available: int, free: float | None = None
                ) -> tuple[int, str]:
    """Threads for a model of ``flops`` per forward batch, given ``free`` idle cores.

    Small models run on one thread. Larger ones use every core, unless other processes
    keep the cores busy: with 2 OpenMP threads and two busy neighbours, steps ran 2.7-4x
    slower than on one thread (each parallel region waits for its descheduled thread), so
    a core that is not idle is not counted.
    """
    if available > 1 and flops < SMALL_MODEL_FLOPS:
        return 1, (f"small model ({flops / 1e6:.2g} MFLOP per forward batch): one thread "
                   "avoids synchronisation overhead")
    if free is not None and available > 1:
        usable = max(1, min(available, int(free + 0.5)))
        if usable < available:
            return usable, (f"{free:.1f} of {available} cores idle (other processes are "
                            f"busy): {usable} thread(s) avoid waiting on descheduled threads")
    return available, f"all {available} cores ({flops / 1e6:.3g} MFLOP per forward batch)"


def cpu_times() -> tuple[int, int] | None:
    """(idle, total) jiffies over all CPUs from /proc/stat; None where unreadable."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    if len(fields) < 4:
        return None
    # user nice system idle iowait irq softirq steal (guest time is inside user)
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return idle, sum(fields[:8])


def idle_cores(window: float = 0.2, cpus: int | None = None) -> float | None:
    """How many cores sat idle over the next ``window`` seconds (this process sleeps).

    Read from /proc/stat: the share of idle time across all CPUs times their number.
    Steal time (the hypervisor running someone else) counts as busy. None where the
    counters cannot be read.
    """
    import time

    before = cpu_times()
    if before is None:
        return None
    time.sleep(window)
    after = cpu_times()
    if after is None or after[1] <= before[1]:
        return None
    share = (after[0] - before[0]) / (after[1] - before[1])
    return share * (cpus or os.cpu_count() or 1)


def _memory_budget() -> int:
    """A quarter of the machine's memory (Linux); 2 GiB when unknown."""
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        return int(pages * size) // 4
    except (ValueError, OSError, AttributeError):
        return 2 * 2**30


def machine() -> dict[str, Any]:
    """A short description of the machine, for run records and benchmarks."""
    flags = cpu_flags()
    return {"platform": platform.platform(), "cpu_model": cpu_model(), "kind": cpu_kind(flags),
            "cpus": os.cpu_count(), "torch": str(torch.__version__),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "amx": "amx_bf16" in flags, "avx512_bf16": "avx512_bf16" in flags,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def grad_scaler(choices: Choices, device: torch.device) -> torch.amp.GradScaler | None:
    """fp16 needs loss scaling (its exponent range is narrow); bf16 and fp32 do not."""
    if choices.precision != "fp16":
        return None
    return torch.amp.GradScaler(device.type)


# below this many optimizer steps, torch.compile's warm-up (tens of seconds) outweighs
# what it saves; on CPU it did not pay at all (docs/benchmarks.md, "torch.compile")
COMPILE_MIN_STEPS = 2000


def compiled(model: nn.Module, setting: str, device: torch.device, total_steps: int,
             choices: Choices) -> nn.Module:
    """The module the training step calls: the model, or ``torch.compile(model)``."""
    if setting == "off" or (setting == "auto" and (
            device.type != "cuda" or total_steps < COMPILE_MIN_STEPS)):
        if setting == "auto":
            choices.reasons.setdefault("compile", "off: eager" + (
                " on CPU" if device.type != "cuda" else f" (< {COMPILE_MIN_STEPS} steps)"))
        return model
    choices.reasons["compile"] = "on" + (" (set in config)" if setting == "on" else
                                          f": CUDA and {total_steps} steps")
    return torch.compile(model)  # type: ignore[return-value]
