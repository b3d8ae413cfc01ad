"""Smaller and faster models under an accuracy guard: quantize, prune, distill, export to
ONNX, and time the Predictor's backends to pick the fastest that stays faithful.

    >>> from layerwise.compress import compress, export, bench      # doctest: +SKIP
    >>> compress("runs/fashion/model", "int8-static", "runs/fashion_int8")
    >>> export("runs/fashion/model")                  # → runs/fashion/model/model.onnx
    >>> bench("runs/fashion/model", autotune=True)    # records the pick in the artifact

The heavy libraries (ONNX Runtime, onnxscript, torch-pruning) are the ``compress`` extra.
"""

from layerwise.compress.bench import bench
from layerwise.compress.export import export
from layerwise.compress.guard import AccuracyGuardError
from layerwise.compress.make import METHODS, Options, compress

__all__ = ["METHODS", "AccuracyGuardError", "Options", "bench", "compress", "export"]
