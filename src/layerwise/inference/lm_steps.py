"""Generation backends for a causal language model: how one cached decoding step runs.

Generation (models/transformer.py, ``Decoder``) runs the prompt once, then one step per new
token: the new token's ids ``[B, 1]``, the keys and values of every earlier token (one
``{"k", "v"}`` dict per block, ``[B, heads, past, head dim]``), its position. A step is
dozens of small operations, so at batch 1 eager PyTorch spends most of a step in per-op
overhead; these backends run the same step another way:

    eager             the module's own ``step`` (the reference)
    bf16              a bfloat16 copy of the module (caches in bfloat16)
    compiled          :class:`StepGraph` through torch.compile (inductor, dynamic shapes:
                      the cache grows every token, so one graph serves every length)
    onnxruntime       :class:`StepGraph` exported to ONNX, run by ONNX Runtime, fp32
    onnxruntime-int8  that graph with its matrices in int8 (ONNX Runtime's dynamic
                      quantizer: int8 weights per output channel, activations per step)

The prompt itself (a step with no cache yet, or several tokens at once) always runs eager
in fp32: it is one call per generation. Graphs are cached under
``$LAYERWISE_CACHE/onnx/<weights hash>/`` like the model's own graphs.

    >>> step = stepper("onnxruntime-int8", model.backbone, Path("runs/lm/model"))  # doctest: +SKIP
    >>> Decoder(model.backbone, step=step).sample([5, 6], 100)                   # doctest: +SKIP
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from layerwise.errors import ConfigError
from layerwise.files import cache_root
from layerwise.inference import onnx as lo

Step = Callable[[torch.Tensor, Any, int], torch.Tensor]
STEP_FILE = "step.onnx"
_BUILDING = threading.Lock()


class StepGraph(nn.Module):
    """One cached step of a causal text transformer with its cache as plain tensors:
    ``(ids [B, 1], position [1], k_0, v_0, k_1, v_1, …) → (logits [B, V], k_0', v_0', …)``,
    the same arithmetic as ``TextTransformer.step`` for one new token (dropout off)."""

    def __init__(self, enc: nn.Module) -> None:
        super().__init__()
        self.enc = enc
        head_dim = enc.blocks[0].attn.qkv.in_features // enc.blocks[0].attn.heads
        inv = 1.0 / (10000 ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv", inv, persistent=False)

    def _position(self, x: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        if self.enc.pos is not None:
            return x + self.enc.pos(position)
        if self.enc.positions == "sinusoidal":
            return x + self.enc.table[position]
        return x

    def forward(self, ids: torch.Tensor, position: torch.Tensor,
                *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self._position(self.enc.tokens(ids), position)      # [B, 1, C]
        ang = position.float()[:, None] * self.inv               # [1, D/2]
        cos, sin = ang.cos().repeat(1, 2), ang.sin().repeat(1, 2)
        present: list[torch.Tensor] = []
        for i, block in enumerate(self.enc.blocks):
            x, k, v = _block_step(block, x, past[2 * i], past[2 * i + 1], cos, sin)
            present += [k, v]
        logits = self.enc.norm(x)[:, 0] @ self.enc.tokens.weight.T  # tied output layer
        return (logits, *present)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    d = x.shape[-1]
    return x * cos + torch.cat([-x[..., d // 2:], x[..., : d // 2]], dim=-1) * sin


def _block_step(block: nn.Module, x: torch.Tensor, past_k: torch.Tensor,
                past_v: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A pre-norm block (models/transformer.py ``Block``) for one token after ``past``."""
    attn = block.attn
    B, T, C = x.shape
    q, k, v = attn.qkv(block.norm1(x)).view(B, T, 3, attn.heads, C // attn.heads
                                              ).permute(2, 0, 3, 1, 4)
    if attn.rotary:
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
    k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)
    y = F.scaled_dot_product_attention(q, k, v)                  # every past key is visible
    x = x + attn.proj(y.transpose(1, 2).reshape(B, T, C))
    return x + block.mlp(block.norm2(x)), k, v


def _flat_cache(caches: list[dict[str, torch.Tensor]]) -> list[torch.Tensor]:
    return [t for c in caches for t in (c["k"], c["v"])]


class GraphStep:
    """A step function for ``Decoder``: the prompt (no cache yet, or several tokens) eager,
    every single-token step through ``run`` (a :class:`StepGraph` in some runtime)."""

    def __init__(self, enc: nn.Module, run: Callable[..., Any]) -> None:
        self.enc, self.run = enc, run

    def __call__(self, ids: torch.Tensor, caches: list[dict[str, torch.Tensor]] | None,
                 offset: int) -> torch.Tensor:
        if caches is None or ids.shape[1] != 1 or "k" not in caches[0]:
            return self.enc.step(ids, caches, offset)  # type: ignore[no-any-return]
        out = self.run(ids, torch.tensor([offset]), *_flat_cache(caches))
        for i, c in enumerate(caches):
            c["k"], c["v"] = out[1 + 2 * i], out[2 + 2 * i]
        return out[0][:, None]                                   # [B, 1, V]


class _OrtStep:
    """A step graph in ONNX Runtime: torch tensors in and out (no copies on the way)."""

    def __init__(self, path: Path) -> None:
        self.runner = lo.OnnxRunner(path)
        self.names = self.runner.inputs

    def __call__(self, *tensors: torch.Tensor) -> list[torch.Tensor]:
        feeds = {n: t.contiguous().numpy() for n, t in zip(self.names, tensors, strict=True)}
        return [torch.from_numpy(r) for r in self.runner.session.run(None, feeds)]


def _names(layers: int) -> tuple[list[str], list[str]]:
    past = [f"past_{kv}_{i}" for i in range(layers) for kv in "kv"]
    return ["ids", "position", *past], ["logits", *[p.replace("past", "present") for p in past]]


def export_step(enc: nn.Module, path: Path) -> Path:
    """Write the :class:`StepGraph` of ``enc`` at ``path`` (batch and past length dynamic)."""
    lo.require("onnxscript")
    graph = StepGraph(enc).eval()
    blk = enc.blocks[0].attn
    heads, head_dim = blk.heads, blk.qkv.in_features // blk.heads
    inputs, outputs = _names(len(enc.blocks))
    batch = torch.export.Dim("batch", min=1, max=4096)
    past = torch.export.Dim("past", min=1, max=65536)
    example = (torch.zeros(2, 1, dtype=torch.long), torch.tensor([3]),
               *[torch.zeros(2, heads, 3, head_dim) for _ in inputs[2:]])
    shapes = ({0: batch}, None, tuple({0: batch, 2: past} for _ in inputs[2:]))  # *past
    path.parent.mkdir(parents=True, exist_ok=True)
    with lo._Quiet(), torch.inference_mode(False), torch.no_grad():
        try:
            program = torch.onnx.export(graph, example, dynamo=True, input_names=inputs,
                                        output_names=outputs, dynamic_shapes=shapes,
                                        opset_version=lo.OPSET, verbose=False, report=False)
        except Exception as e:  # the exporter raises many kinds; one clear message for all
            raise ConfigError(f"cannot export the decoding step to ONNX: {type(e).__name__}: "
                              f"{str(e).splitlines()[0][:300]}") from None
    program.save(str(path))
    return path


def step_graph(enc: nn.Module, model_dir: Path, int8: bool) -> Path:
    """The cached fp32 (or dynamic int8) step graph of the artifact's weights."""
    from layerwise.inference.backends import weights_hash

    folder = cache_root() / "onnx" / weights_hash(model_dir)
    fp32, q = folder / STEP_FILE, folder / "step.int8-dynamic.onnx"
    with _BUILDING:  # server threads that generate at once export once
        if not fp32.is_file():
            export_step(enc, fp32)
        if int8 and not q.is_file():
            lo.quantize(fp32, q, "dynamic")
    return q if int8 else fp32


def _bf16_step(enc: nn.Module) -> Step:
    half = copy.deepcopy(enc).to(torch.bfloat16).eval()

    def step(ids: torch.Tensor, caches: Any, offset: int) -> torch.Tensor:
        return half.step(ids, caches, offset).float()  # type: ignore[no-any-return]
    return step


def _compiled(enc: nn.Module) -> Callable[..., Any]:
    return torch.compile(StepGraph(enc).eval(), backend="inductor", dynamic=True)


def stepper(name: str, backbone: nn.Module, model_dir: Path | None) -> Step:
    """The step function of generation backend ``name`` for a causal transformer."""
    from layerwise.inference.backends import AUTO, check_name

    if check_name(name) == AUTO:  # the Predictor resolves it to one backend first
        raise ConfigError("a decoding step runs one backend: resolve 'auto' to the "
                          "recorded pick first (backends.resolved)")
    enc = backbone.encoders[backbone.text_names[0]]  # type: ignore[index]
    if name == "eager":
        return enc.step  # type: ignore[no-any-return]
    if name == "bf16":
        return _bf16_step(enc)
    if name == "compiled":
        return GraphStep(enc, _compiled(enc))
    if model_dir is None:
        raise ConfigError(f"backend {name!r} needs a model loaded from its directory")
    return GraphStep(enc, _OrtStep(step_graph(enc, model_dir, name == "onnxruntime-int8")))
