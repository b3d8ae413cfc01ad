"""Quantization: int8 (dynamic), int8-static (calibrated, for CNNs) and bf16 weights.

What a quantized artifact stores and how it runs:

- ``int8`` and ``int8-static``: the weights of every matrix (Linear, convolution, LSTM/GRU,
  embedding) in int8 with one float scale per output row (symmetric), about a quarter of
  fp32; loading dequantizes them (artifact.dequantize), so eager PyTorch runs the very
  values the int8 graph holds. The int8 graph itself is made by ONNX Runtime's quantizer
  from the exported graph of those weights — dynamic (activations quantized on the fly:
  Linear, LSTM, GRU, attention matrices) or static QDQ (activations too, their ranges
  calibrated on training rows and stored in ``calibration.json``, so the same graph is
  rebuilt on another machine without data) — and cached; its backend,
  ``onnxruntime-int8``, is the artifact's default.
- ``bf16``: the weights in bfloat16 (half of fp32); the ``bf16`` backend is the default.

PyTorch's own ``torch.ao.quantization`` is not used: it is deprecated for removal.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from layerwise.artifact import INT8_SCALE
from layerwise.data.batching import TensorData, take
from layerwise.inference import backends
from layerwise.inference import onnx as lo

MIN_INT8 = 256          # tensors smaller than this stay fp32 (biases, norms: bytes, not time)
CALIBRATION_ROWS = 512  # training rows whose activations set the static ranges
CALIBRATION_BATCH = 64


def int8_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict with each matrix as int8 values + per-row scales (symmetric)."""
    out: dict[str, torch.Tensor] = {}
    for name, t in state.items():
        if not t.is_floating_point() or t.dim() < 2 or t.numel() < MIN_INT8:
            out[name] = t.contiguous()
            continue
        rows = t.detach().float().reshape(t.shape[0], -1)              # [out, rest]
        scale = rows.abs().amax(1).clamp(min=1e-12) / 127.0             # [out]
        q = (rows / scale[:, None]).round().clamp(-127, 127).to(torch.int8)
        out[name] = q.reshape(t.shape).contiguous()
        out[name + INT8_SCALE] = scale.contiguous()
    return out


def bf16_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.to(torch.bfloat16).contiguous() if v.is_floating_point() else v.contiguous()
            for k, v in state.items()}


def calibration_batches(train: TensorData, seed: int, rows: int = CALIBRATION_ROWS
                        ) -> Iterator[Any]:
    """Seeded batches of training rows for the static ranges."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(train), generator=g)[:rows]
    for s in range(0, len(idx), CALIBRATION_BATCH):
        yield take(train.inputs, idx[s:s + CALIBRATION_BATCH])


def calibrate(child_dir: Path, model: torch.nn.Module, train: TensorData, seed: int) -> Path:
    """Static int8: export the child's graph, calibrate on training rows, keep the ranges
    in ``child_dir/calibration.json`` (the graph goes to the backend's cache)."""
    example = take(train.inputs, torch.arange(min(len(train), 2)) % max(len(train), 1))
    graph = backends.onnx_graph(model, child_dir, example)
    ranges = child_dir / backends.RANGES_FILE
    out = graph.parent / "model.int8-static.onnx"
    lo.quantize(graph, out, "static", calibration=calibration_batches(train, seed),
                ranges=ranges)
    return ranges


def settings(method: str) -> dict[str, Any]:
    """What the child's metadata records about its quantization."""
    if method == "bf16":
        return {"compression_backend": "bf16", "quantization": {"weights": "bf16"}}
    scheme = "static" if method == "int8-static" else "dynamic"
    return {"compression_backend": "onnxruntime-int8",
            "quantization": {"weights": "int8 per output row, symmetric", "scheme": scheme,
                             "activations": "uint8, calibrated" if scheme == "static"
                             else "int8, per batch"}}
