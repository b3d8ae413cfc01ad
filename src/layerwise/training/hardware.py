"""Choose precision, memory format, batching path and device from the hardware and model.

Every choice is returned with its reason and recorded in the run; every choice can be
overridden in ``train`` (``precision: fp32``, ``memory_format: contiguous``, ...).
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import asdict, dataclass
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


def bf16_is_fast(device: torch.device) -> tuple[bool, str]:
    """Whether bf16 matrix products beat fp32 here, and why we think so."""
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        return ok, "CUDA device supports bf16" if ok else "CUDA device lacks bf16"
    flags = cpu_flags()
    if "amx_bf16" in flags:
        return True, "CPU has AMX (amx_bf16): bf16 matrix products run ~6x faster than fp32"
    if "avx512_bf16" in flags:
        return True, "CPU has AVX512_BF16"
    return False, ("CPU has no AMX/AVX512_BF16: bf16 would be emulated and slower than fp32"
                   if flags else "CPU features unknown: fp32 is the safe choice")


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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return torch.bfloat16 if self.precision == "bf16" else None


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
        fast, why = bf16_is_fast(torch.device(device))
        precision, reasons["precision"] = ("bf16" if fast else "fp32"), why
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


def threads_for(flops: float, available: int) -> tuple[int, str]:
    if available > 1 and flops < SMALL_MODEL_FLOPS:
        return 1, (f"small model ({flops / 1e6:.2g} MFLOP per forward batch): one thread "
                   "avoids synchronisation overhead")
    return available, f"all {available} cores ({flops / 1e6:.3g} MFLOP per forward batch)"


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
    return {"platform": platform.platform(), "processor": platform.processor() or
            platform.machine(), "cpus": os.cpu_count(), "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "amx": "amx_bf16" in flags, "cuda": torch.cuda.is_available()}
