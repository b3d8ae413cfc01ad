"""How a Predictor runs its model: backends selectable by name.

    eager             the PyTorch module as trained (the reference)
    compiled          torch.compile (inductor) with weights frozen as constants; pays after
                      a compile of tens of seconds on the first batch (and once more when
                      the batch size first changes)
    bf16              a bfloat16 copy of the module (fast where the CPU has bf16 units:
                      the ``amx`` and ``avx512_bf16`` kinds)
    onnxruntime       the ONNX graph (see inference/onnx.py) in ONNX Runtime, fp32
    onnxruntime-int8  an int8 graph made by ONNX Runtime's quantizer: dynamic, or static
                      with the activation ranges a ``compress --method int8-static`` run
                      stored in the artifact

A backend is a callable: encoded inputs (a tree of tensors) → the model's output dict. It
builds what it needs (export, quantization, compilation) on its first batch, once; graphs
are cached under ``$LAYERWISE_CACHE/onnx/<weights hash>`` unless the artifact carries one.

The pick of an autotune run (``layerwise bench --autotune``) is stored in the artifact per
CPU model (``meta["backends"][cpu model]``); :func:`default_backend` reads it back. When the
fastest backend differs by batch size, the default is ``auto``: each call runs the pick of
the nearest measured batch size at or below its own.

A language model's generation runs its decoding step on the same backend names
(inference/lm_steps.py).
"""

from __future__ import annotations

import copy
import hashlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from layerwise.errors import ConfigError, UnknownNameError
from layerwise.files import cache_root
from layerwise.inference import onnx as lo

Runner = Callable[[Any], dict[str, torch.Tensor]]
BACKENDS = ("eager", "compiled", "bf16", "onnxruntime", "onnxruntime-int8")
ONNX_FILE = "model.onnx"          # written into the artifact by ``layerwise export``
RANGES_FILE = "calibration.json"  # activation ranges of a static int8 artifact


AUTO = "auto"  # the autotuned backend of each batch size, as recorded for this CPU


def check_name(name: str) -> str:
    if name not in BACKENDS and name != AUTO:
        raise UnknownNameError(f"unknown backend {name!r}; valid: "
                               f"{', '.join((*BACKENDS, AUTO))}")
    return name


def machine_key() -> str:
    """The key an autotune pick is stored under: the CPU model (the kind alone is too
    coarse: two Zen 4 parts with different caches pick differently)."""
    from layerwise.training.hardware import cpu_model

    return cpu_model()


def _record(meta: dict[str, Any]) -> dict[str, Any]:
    return (meta.get("backends") or {}).get(machine_key(), {})  # type: ignore[no-any-return]


def by_batch(meta: dict[str, Any]) -> dict[int, str]:
    """The autotuned pick per batch size recorded for this CPU model (empty if none)."""
    picks = _record(meta).get("by_batch") or {}
    return {int(b): n for b, n in picks.items() if n in BACKENDS}


def resolved(name: str, meta: dict[str, Any]) -> str:
    """A concrete backend for ``name``: ``auto`` is the pick made for the record's batch
    size (what one-backend-only uses, such as generation, run)."""
    if name != AUTO:
        return name
    picked = _record(meta).get("pick")
    return picked if picked in BACKENDS else "eager"


def default_backend(meta: dict[str, Any]) -> str:
    """The backend recorded for this machine's CPU model (``auto`` when autotune found a
    different fastest backend at different batch sizes), else the one a compression step
    made the artifact for (its int8 graph), else eager."""
    if len(set(by_batch(meta).values())) > 1:
        return AUTO
    picked = _record(meta).get("pick")
    if isinstance(picked, str) and picked in BACKENDS:
        return picked
    made_for = (meta.get("compression") or {}).get("backend")
    return made_for if made_for in BACKENDS else "eager"


def weights_hash(model_dir: Path) -> str:
    h = hashlib.sha256()
    with open(model_dir / "model.safetensors", "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:24]


class _Lazy:
    """Builds a runner from the first batch it sees, once (threads wait for it)."""

    def __init__(self, build: Callable[[Any], Runner]) -> None:
        self._build, self._run, self._lock = build, None, threading.Lock()

    def __call__(self, inputs: Any) -> dict[str, torch.Tensor]:
        if self._run is None:
            with self._lock:
                if self._run is None:
                    self._run = self._build(inputs)
        return self._run(inputs)


def _rows(inputs: Any, n: int = 2) -> Any:
    """At least ``n`` rows (export fixes any axis of size 1), outside inference mode."""
    from layerwise.data.batching import first_len, take

    idx = torch.arange(n) % max(first_len(inputs), 1)
    with torch.inference_mode(False):
        return _clone(take(inputs, idx))


def _clone(tree: Any) -> Any:
    if isinstance(tree, torch.Tensor):
        return tree.clone()
    return {k: _clone(v) for k, v in tree.items()}


def onnx_graph(model: nn.Module, model_dir: Path, inputs: Any) -> Path:
    """The fp32 graph of the artifact: its own ``model.onnx`` when it was exported from
    these weights, else one exported now into the cache."""
    digest = weights_hash(model_dir)
    from layerwise import artifact as art

    recorded = art.read_header(model_dir).get("onnx") or {}
    own = model_dir / ONNX_FILE
    if own.is_file() and recorded.get("weights") == digest:
        return own
    path = cache_root() / "onnx" / digest / ONNX_FILE
    if not path.is_file():
        with torch.inference_mode(False), torch.no_grad():
            lo.export(model, _rows(inputs), path)
    return path


def int8_graph(model: nn.Module, model_dir: Path, meta: dict[str, Any], inputs: Any) -> Path:
    """The int8 graph: static (QDQ) with the artifact's stored ranges, else dynamic."""
    fp32 = onnx_graph(model, model_dir, inputs)
    ranges = model_dir / RANGES_FILE
    scheme = (meta.get("quantization") or {}).get("scheme", "dynamic")
    if scheme == "static" and not ranges.is_file():
        raise ConfigError(f"{model_dir}: a static int8 model needs its {RANGES_FILE}; "
                          "make it with layerwise compress --method int8-static")
    path = cache_root() / "onnx" / weights_hash(model_dir) / f"model.int8-{scheme}.onnx"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)  # the fp32 graph may be the artifact's
        lo.quantize(fp32, path, scheme, ranges=ranges if scheme == "static" else None)
    return path


def _bf16(model: nn.Module) -> Runner:
    half = copy.deepcopy(model).to(torch.bfloat16).eval()

    def run(inputs: Any) -> dict[str, torch.Tensor]:
        out = half(_cast(inputs, torch.bfloat16))
        return {k: v.float() for k, v in out.items()}
    return run


def _cast(tree: Any, dtype: torch.dtype) -> Any:
    if isinstance(tree, torch.Tensor):
        return tree.to(dtype) if tree.is_floating_point() else tree
    return {k: _cast(v, dtype) for k, v in tree.items()}


def _compiled(model: nn.Module) -> Runner:
    import torch._inductor.config as inductor

    fn = torch.compile(model, backend="inductor", dynamic=False)

    def run(inputs: Any) -> dict[str, torch.Tensor]:
        with inductor.patch(freezing=True):  # weights folded into the graph as constants
            return fn(inputs)  # type: ignore[no-any-return]
    return run


def make(name: str, model: nn.Module, model_dir: Path | None,
         meta: dict[str, Any]) -> Runner:
    """The runner of backend ``name`` for ``model`` (loaded from ``model_dir``)."""
    check_name(name)
    if name == AUTO:
        return _by_batch(model, model_dir, meta)
    if name == "eager":
        return model  # type: ignore[return-value]
    if name == "compiled":
        return _compiled(model)
    if name == "bf16":
        return _bf16(model)
    if model_dir is None:
        raise ConfigError(f"backend {name!r} needs a model loaded from its directory")
    if name == "onnxruntime":
        return _Lazy(lambda x: lo.OnnxRunner(onnx_graph(model, model_dir, x)))
    return _Lazy(lambda x: lo.OnnxRunner(int8_graph(model, model_dir, meta, x)))


def _by_batch(model: nn.Module, model_dir: Path | None, meta: dict[str, Any]) -> Runner:
    """``auto``: each call runs the backend autotune picked for the nearest measured batch
    size (the largest at or below the call's, else the smallest)."""
    from layerwise.data.batching import first_len

    picks = by_batch(meta) or {1: resolved(AUTO, meta)}
    runners = {n: make(n, model, model_dir, meta) for n in set(picks.values())}
    sizes = sorted(picks)

    def run(inputs: Any) -> dict[str, torch.Tensor]:
        n = first_len(inputs)
        size = max((b for b in sizes if b <= n), default=sizes[0])
        return runners[picks[size]](inputs)
    return run
