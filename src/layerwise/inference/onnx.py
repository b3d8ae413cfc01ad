"""ONNX graphs of a model: export with the dynamo exporter, run with ONNX Runtime, and make
int8 graphs with ONNX Runtime's quantizer.

A model takes a tree of tensors (``{"image": [B, C, H, W]}``, ``{"text": {"ids": [B, T],
"lengths": [B]}}``) and returns a dict of tensors; an ONNX graph takes and returns flat,
named tensors. The names are the tree's keys joined by dots (``text.ids``), inputs and
outputs in sorted order, so a plain ``onnxruntime.InferenceSession`` can feed the graph
without layerwise (an output named like an input, as a sequence-to-sequence model's
target, gets the suffix ``__output``). The batch axis is dynamic; so is the time axis of
text ids, and :class:`OnnxRunner` cuts a text batch to its longest row before running, as
the model does.

    >>> export(model, example_inputs, Path("model.onnx"))         # doctest: +SKIP
    >>> OnnxRunner(Path("model.onnx"))(inputs)["label"].shape       # doctest: +SKIP
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from layerwise.errors import ArtifactError, ConfigError

CLASH = "__output"  # suffix of an output named like an input (a seq2seq model's target)
EXTERNAL_BYTES = 512 * 2**20  # weights above this go to a side file (protobuf stops at 2 GB)
OPSET = 18


def require(module: str) -> Any:
    """Import an optional package of the ``compress`` extra, or say what to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.split(".")[0]
        raise ConfigError(f"this needs the {package} package: pip install "
                          f"'layerwise[compress]'") from None


def flatten(tree: Any, prefix: str = "") -> list[tuple[str, torch.Tensor]]:
    """``[(dotted name, tensor)]`` of a tree of dicts of tensors, in sorted key order."""
    if isinstance(tree, torch.Tensor):
        return [(prefix, tree)]
    if not isinstance(tree, Mapping):
        raise ConfigError(f"an ONNX graph takes tensors or dicts of tensors; input "
                          f"{prefix or 'inputs'!r} is a {type(tree).__name__}")
    out: list[tuple[str, torch.Tensor]] = []
    for key in sorted(tree):
        if "." in str(key):
            raise ConfigError(f"input name {key!r} contains a dot; ONNX export joins nested "
                              "names with dots")
        out += flatten(tree[key], f"{prefix}.{key}" if prefix else str(key))
    return out


def unflatten(names: Iterable[str], tensors: Iterable[torch.Tensor]) -> dict[str, Any]:
    """The tree that :func:`flatten` flattened."""
    tree: dict[str, Any] = {}
    for name, t in zip(names, tensors, strict=True):
        *parents, leaf = name.split(".")
        node = tree
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = t
    return tree


def trim_text(tree: Any) -> Any:
    """Cut every text batch (a dict with ``ids`` and ``lengths``) to its longest row: the
    graph's time axis is dynamic, so padding past the longest row is work for nothing."""
    if not isinstance(tree, Mapping):
        return tree
    if "ids" in tree and "lengths" in tree and tree["ids"].dim() == 2:
        longest = max(int(tree["lengths"].max()) if tree["lengths"].numel() else 1, 1)
        return {**tree, "ids": tree["ids"][:, :longest]}
    return {k: trim_text(v) for k, v in tree.items()}


class _Flat(nn.Module):
    """The model with flat tensor inputs and a tuple of outputs (what export traces)."""

    def __init__(self, model: nn.Module, names: list[str], outputs: list[str]) -> None:
        super().__init__()
        self.model, self.names, self.outputs = model, names, outputs

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(unflatten(self.names, tensors))
        return tuple(out[k] for k in self.outputs)


def _dynamic_shapes(flat: list[tuple[str, torch.Tensor]]) -> tuple[Any, ...]:
    """Batch axis dynamic everywhere; the time axis of text ids too (one per text)."""
    batch = torch.export.Dim("batch", min=1, max=65536)
    shapes = []
    for name, t in flat:
        axes: dict[int, Any] = {0: batch}
        if name.endswith("ids") and t.dim() == 2:
            axes[1] = torch.export.Dim(f"time_{len(shapes)}", min=1, max=65536)
        shapes.append(axes)
    return (tuple(shapes),)


def export(model: nn.Module, example: Any, path: Path) -> Path:
    """Write ``model`` (in eval mode) as an ONNX graph at ``path``; ``example``: a batch of
    encoded inputs of at least two rows (a dimension of size 1 would be fixed by export).
    Weights above :data:`EXTERNAL_BYTES` go to ``path`` + ``.data`` beside it."""
    require("onnxscript")
    model = model.eval()
    flat = flatten(example)
    names = [n for n, _ in flat]
    with torch.no_grad():
        outputs = sorted(model(unflatten(names, [t for _, t in flat])))
    wrapper = _Flat(model, names, outputs).eval()
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    graph_outputs = [o + CLASH if o in names else o for o in outputs]  # ONNX names are unique
    with _Quiet():
        program = _export(wrapper, flat, names, graph_outputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(path), external_data=size > EXTERNAL_BYTES)
    return path


def _export(wrapper: nn.Module, flat: list[tuple[str, torch.Tensor]], names: list[str],
            outputs: list[str]) -> Any:
    try:
        return torch.onnx.export(wrapper, tuple(t for _, t in flat), dynamo=True,
                                 input_names=names, output_names=outputs,
                                 dynamic_shapes=_dynamic_shapes(flat), opset_version=OPSET,
                                 verbose=False, report=False)
    except Exception as e:  # the exporter raises many kinds; one clear message for all
        raise ArtifactError(f"cannot export this {type(wrapper.model).__name__} to ONNX: "
                            f"{type(e).__name__}: {str(e).splitlines()[0][:300]}") from None


class _Quiet:
    """Silence the exporter's and quantizer's chatter (optional-package notices,
    deprecation and pre-processing hints): a CLI user sees our one-line outcome."""

    def __enter__(self) -> None:
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore")
        self._level = logging.root.manager.disable
        logging.disable(logging.WARNING)

    def __exit__(self, *exc: object) -> None:
        logging.disable(self._level)
        self._warnings.__exit__(*exc)


class OnnxRunner:
    """An ONNX Runtime session that takes and returns trees like the model does."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        ort = require("onnxruntime")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # no busy-waiting between runs: it would steal the cores from torch's own threads
        # (and from other processes) in a Predictor that mixes backends
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # ORT's own exception classes
            raise ArtifactError(f"{path}: ONNX Runtime cannot load it: {e}") from None
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name.removesuffix(CLASH) for o in self.session.get_outputs()]
        self.path = path
        # a graph whose time axis came out fixed takes text as encoded (padded), untrimmed
        self.trim = all(not isinstance(i.shape[1], int) for i in self.session.get_inputs()
                        if i.name.endswith("ids") and len(i.shape) == 2)

    def __call__(self, inputs: Any) -> dict[str, torch.Tensor]:
        flat = dict(flatten(trim_text(inputs) if self.trim else inputs))
        missing = [n for n in self.inputs if n not in flat]
        if missing:
            raise ConfigError(f"{self.path}: the graph needs inputs {missing}; got "
                              f"{sorted(flat)}")
        feeds = {n: flat[n].detach().cpu().contiguous().numpy() for n in self.inputs}
        result = self.session.run(None, feeds)
        return {n: torch.from_numpy(r) for n, r in zip(self.outputs, result, strict=True)}


class _Reader:
    """Calibration batches for ONNX Runtime's static quantizer (its data-reader protocol)."""

    def __init__(self, batches: Iterable[Any], names: list[str]) -> None:
        self.names = names
        self._it: Iterator[Any] = iter(batches)

    def get_next(self) -> dict[str, Any] | None:
        batch = next(self._it, None)
        if batch is None:
            return None
        flat = dict(flatten(trim_text(batch)))
        return {n: flat[n].numpy() for n in self.names}


def quantize(src: Path, dst: Path, scheme: str, *, calibration: Iterable[Any] | None = None,
             ranges: Path | None = None) -> Path:
    """Write an int8 copy of the graph ``src`` at ``dst``.

    ``dynamic``: int8 weights, activations quantized on the fly (Linear, LSTM/GRU, MatMul).
    ``static``: weights and activations int8 in QDQ form (ONNX Runtime fuses it into int8
    kernels), activation ranges from ``calibration`` batches; ``ranges`` is a JSON file of
    those ranges: written when calibrating, read (and no calibration run) when it exists.
    Weights are symmetric per output channel; activations unsigned (u8s8 kernels on x86).
    """
    with _Quiet():
        return _quantize(src, dst, scheme, calibration, ranges)


def _quantize(src: Path, dst: Path, scheme: str, calibration: Iterable[Any] | None,
              ranges: Path | None) -> Path:
    q = require("onnxruntime.quantization")
    if scheme == "dynamic":
        q.quantize_dynamic(str(src), str(dst), per_channel=True, weight_type=q.QuantType.QInt8)
        return dst
    if scheme != "static":
        raise ConfigError(f"unknown quantization scheme {scheme!r}; valid: dynamic, static")
    ort = require("onnxruntime")
    names = [i.name for i in ort.InferenceSession(
        str(src), providers=["CPUExecutionProvider"]).get_inputs()]
    have_ranges = ranges is not None and ranges.is_file()
    if calibration is None and not have_ranges:
        raise ConfigError("static int8 needs calibration data or a saved range file")
    reader = None if have_ranges else _Reader(calibration or [], names)
    q.quantize_static(str(src), str(dst), reader, quant_format=q.QuantFormat.QDQ,
                      per_channel=True, activation_type=q.QuantType.QUInt8,
                      weight_type=q.QuantType.QInt8,
                      calibration_cache_path=str(ranges) if ranges else None)
    return dst


def file_bytes(path: Path) -> int:
    """Size of an ONNX file with its external weights, if any."""
    side = Path(str(path) + ".data")
    return path.stat().st_size + (side.stat().st_size if side.exists() else 0)


