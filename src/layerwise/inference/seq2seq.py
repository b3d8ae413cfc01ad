"""Sequence-to-sequence inference: raw strings in, generated strings out.

    >>> import layerwise as lw                                   # doctest: +SKIP
    >>> m = lw.load("runs/dates/model")                          # doctest: +SKIP
    >>> m.predict(["3rd of March 1999", "03/03/99"])             # doctest: +SKIP
    [{'iso': '1999-03-03', 'iso_probability': 0.99}, {'iso': '1999-03-03', ...}]
    >>> m.generate("Wed 3 Mar 1999", beams=4)                    # doctest: +SKIP
    '1999-03-03'
    >>> m.attention("3rd of March 1999")["cross"][-1]            # doctest: +SKIP

``Predictor`` delegates here when its model has a ``sequence`` output. Decoding is greedy
unless the output's ``beams`` (or a call's ``beams``) is above 1; ``probability`` is the
product of the chosen tokens' probabilities (``<eos>`` included).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from layerwise.data.batching import TensorData, take
from layerwise.data.seq2seq import SequenceEncoder
from layerwise.errors import ConfigError
from layerwise.models.transformer import pick


def sequence_output(schema: Any) -> SequenceEncoder | None:
    """The schema's sequence output, if it has one."""
    return next((e for e in schema.outputs if isinstance(e, SequenceEncoder)), None)


def _the_sequence_output(schema: Any) -> Any:
    """The sequence output of a sequence-to-sequence model (refused for any other)."""
    enc = sequence_output(schema)
    if enc is None:
        raise ConfigError("this model has no sequence output: it does not generate text "
                          "from a source text")
    return enc


def decode_rows(backbone: Any, enc: SequenceEncoder, inputs: dict[str, Any], *,
                beams: int | None = None, batch_size: int = 256,
                use_cache: bool = True) -> tuple[list[list[int]], list[float]]:
    """Generated token ids and log-probabilities for every row of encoded ``inputs``."""
    text = inputs[backbone.source]
    n = len(text["lengths"])
    ids: list[list[int]] = []
    scores: list[float] = []
    for start in range(0, n, batch_size):
        idx = torch.arange(start, min(n, start + batch_size))
        got, s = backbone.generate(take(text, idx), beams=beams or enc.cfg.beams,
                                   use_cache=use_cache)
        ids += got
        scores += s
    return ids, scores


def predict(predictor: Any, data: TensorData, beams: int | None = None,
            batch_size: int = 256) -> list[dict[str, Any]]:
    """One dict per row: the generated text and its probability."""
    enc = _the_sequence_output(predictor.schema)
    ids, scores = decode_rows(predictor.model.backbone, enc, data.inputs, beams=beams,
                              batch_size=batch_size)
    return [{enc.name: enc.decode(i), f"{enc.name}_probability": math.exp(s)}
            for i, s in zip(ids, scores, strict=True)]


def generate(predictor: Any, prompt: str, max_tokens: int | None = None, *,
             temperature: float | None = None,
             top_k: int | None = None, top_p: float | None = None, beams: int = 1,
             seed: int | None = None, use_cache: bool = True) -> str:
    """The output for one source text: greedy (``temperature`` None or 0), beam search
    (``beams > 1``), or a sample (``temperature > 0``, with ``top_k`` / ``top_p``)."""
    enc = _the_sequence_output(predictor.schema)
    backbone = predictor.model.backbone
    text = predictor.schema.texts[0].transform(np.array([prompt], dtype=object))
    choose = None
    if beams == 1 and temperature:
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        t = float(temperature)

        def choose(lp: torch.Tensor) -> torch.Tensor:
            return torch.tensor([pick(r, t, top_k, top_p, False, g) for r in lp])
    if max_tokens == 0:
        return ""
    ids, _ = backbone.generate(text, beams=beams, max_length=max_tokens, use_cache=use_cache,
                               choose=choose)
    return enc.decode(ids[0])


def attention(predictor: Any, source: str, beams: int | None = None) -> dict[str, Any]:
    """Generate for ``source`` and return the weights that produced the output: the
    source and output tokens, and ``encoder`` / ``decoder`` / ``cross`` weights per block
    (``cross``: ``[heads, output tokens (+ <eos>), source tokens]``)."""
    enc = _the_sequence_output(predictor.schema)
    backbone = predictor.model.backbone
    src_enc = predictor.schema.texts[0]
    text = src_enc.transform(np.array([source], dtype=object))
    ids, _ = backbone.generate(text, beams=beams or enc.cfg.beams)
    ended = len(ids[0]) < backbone.max_length  # an output cut at max_length has no <eos>
    s, t = int(text["lengths"][0]), len(ids[0]) + ended
    maps = backbone.attention_maps({backbone.source: text,
                                    backbone.target: backbone.teacher_ids(ids)})
    return {"source_tokens": [src_enc.decode([i]) for i in text["ids"][0, :s].tolist()],
            "output_tokens": [enc.decode([i]) for i in ids[0]] + ["<eos>"] * ended,
            "output": enc.decode(ids[0]),
            "encoder": [w[0, :, :s, :s] for w in maps["encoder"]],
            "decoder": [w[0, :, :t, :t] for w in maps["decoder"]],
            "cross": [w[0, :, :t, :s] for w in maps["cross"]]}


def exact_rows(model: Any, schema: Any, inputs: dict[str, Any],
               targets: torch.Tensor) -> torch.Tensor:
    """1.0 where decoding (greedy, or the output's beams) reproduces the target exactly."""
    enc = _the_sequence_output(schema)
    ids, _ = decode_rows(model.backbone, enc, inputs, batch_size=len(targets))
    want = [enc.strip(r) for r in targets[:, 1:].tolist()]
    return torch.tensor([float(a == b) for a, b in zip(ids, want, strict=True)])
