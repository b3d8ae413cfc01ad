"""``layerwise export MODEL --format onnx``: the model as an ONNX graph, checked against
eager before it is kept.

The graph (see inference/onnx.py) takes flat named inputs (``image``, ``text.ids``,
``text.lengths``), has a dynamic batch axis, and keeps weights above 512 MB in a side file.
Before the file is kept, ONNX Runtime runs it on rows of the run's validation split (or
given rows) and its outputs must match eager PyTorch within ``atol + rtol·|eager|``; a
graph that does not is deleted and refused with the largest difference in the message.
Written into the model directory (the default), the graph is recorded in its metadata
with the hash of the weights it came from, so the ``onnxruntime`` backend uses it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from layerwise import artifact as art
from layerwise.data.batching import TensorData, take
from layerwise.errors import ArtifactError, ConfigError
from layerwise.inference import backends
from layerwise.inference import onnx as lo
from layerwise.inference.predictor import Predictor

FORMATS = ("onnx",)
CHECK_ROWS = 256


def max_difference(graph: Path, model: torch.nn.Module, inputs: Any,
                   rtol: float) -> tuple[float, float]:
    """(largest |ORT − eager| over all outputs, largest allowed-by-rtol part of it)."""
    got = lo.OnnxRunner(graph)(inputs)
    with torch.inference_mode():
        want = model(inputs)
    worst, allowed = 0.0, 0.0
    for name, w in want.items():
        diff = (got[name].float() - w.float()).abs()
        i = int(diff.flatten().argmax())
        if float(diff.flatten()[i]) > worst:
            worst, allowed = float(diff.flatten()[i]), rtol * float(w.abs().flatten()[i])
    return worst, allowed


def check_rows(pred: Predictor, data: TensorData | None) -> Any:
    """Up to :data:`CHECK_ROWS` encoded rows to compare on (the validation split)."""
    from layerwise.compress.guard import validation_data

    data = data if data is not None else validation_data(pred)
    n = len(data)
    if n == 0:
        raise ConfigError("no rows to check the exported graph on")
    # at least two rows: export would fix an axis of size 1
    return take(data.inputs, torch.arange(max(min(n, CHECK_ROWS), 2)) % n)


def export(model_dir: str | Path, output: str | Path | None = None, *, fmt: str = "onnx",
           atol: float = 1e-4, rtol: float = 1e-3, data: TensorData | None = None
           ) -> dict[str, Any]:
    """Export, check against eager, keep or refuse; returns what was written and checked."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; valid: {', '.join(FORMATS)}")
    pred = Predictor.load(model_dir, backend="eager")
    rows = check_rows(pred, data)
    path = Path(output) if output is not None else Path(model_dir) / backends.ONNX_FILE
    if path.suffix != ".onnx" or path.is_dir():
        raise ConfigError(f"--output must be a .onnx file; got {path}")
    lo.export(pred.model, rows, path)
    worst, allowed = max_difference(path, pred.model, rows, rtol)
    if worst > atol + allowed:
        for p in (path, Path(str(path) + ".data")):
            p.unlink(missing_ok=True)
        raise ArtifactError(f"the ONNX graph does not match the model: largest output "
                            f"difference {worst:.3g} > {atol:g} + {rtol:g}·|output|; "
                            "graph not written")
    record = {"file": path.name, "weights": backends.weights_hash(Path(model_dir)),
              "opset": lo.OPSET, "max_abs_diff": worst, "rows_checked": len(lo.flatten(rows)[0][1]),
              "bytes": lo.file_bytes(path)}
    if path.resolve().parent == Path(model_dir).resolve() and path.name == backends.ONNX_FILE:
        art.update_meta(model_dir, {"onnx": record})
    return {**record, "path": str(path)}
