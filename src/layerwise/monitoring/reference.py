"""What a model's ``reference.json`` holds for drift monitoring, beyond the per-feature
summaries the data stage writes (counts, means, deciles, frequencies):

- ``sample`` inside each numeric feature: up to ``SAMPLE`` training values (for KS);
- ``_embedding``: the backbone features of up to ``EMBED_ROWS`` validation rows, projected
  on their top ``EMBED_DIMS`` principal axes (``mean``, ``components``, ``vectors``) — the
  space the MMD test compares live images and texts in. Validation rows, not training
  rows: the model has fitted its training rows, whose features sit apart from any new data;
- ``_predictions``: the predicted class frequencies on the validation rows.

Training adds these (api.py calls :func:`extend`); :func:`add_to_model` adds them to an
older model directory from rows the model was not trained on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from layerwise.artifact import REFERENCE
from layerwise.files import dumps_json, write_text

SAMPLE = 1000
EMBED_ROWS = 300
EMBED_DIMS = 32
PREDICT_ROWS = 5000  # held-out rows whose predicted classes form the reference


@torch.inference_mode()
def embed(model: Any, inputs: dict[str, Any], batch_size: int = 256) -> np.ndarray | None:
    """Backbone features ``[N, F]`` of encoded inputs, or None for a model without one."""
    from layerwise.data.batching import first_len, inference_rows, take

    backbone = getattr(model, "backbone", None)
    if backbone is None or not hasattr(model, "heads"):
        return None
    n = first_len(inputs)
    batch_size = inference_rows(backbone, inputs, batch_size)
    parts = []
    for s in range(0, n, batch_size):
        h = backbone(take(inputs, torch.arange(s, min(n, s + batch_size))))
        if not isinstance(h, torch.Tensor) or h.dim() != 2:
            return None
        parts.append(h.float())
    return torch.cat(parts).numpy()


@torch.inference_mode()
def predicted(model: Any, schema: Any, inputs: dict[str, Any]) -> dict[str, list[str]]:
    """The predicted label of each row for every category and binary output."""
    out = model(inputs)
    labels: dict[str, list[str]] = {}
    for enc in schema.outputs:
        if enc.kind == "category":
            labels[enc.name] = [str(enc.vocab[i]) for i in out[enc.name].argmax(1).tolist()]
        elif enc.kind == "binary":
            names = enc.labels()
            labels[enc.name] = [str(names[int(p >= enc.cfg.threshold)])
                                for p in out[enc.name].sigmoid().tolist()]
    return labels


def _frequencies(values: list[str]) -> dict[str, float]:
    keys, counts = np.unique(np.asarray(values, dtype=object).astype(str), return_counts=True)
    return {str(k): float(c / len(values)) for k, c in zip(keys, counts, strict=True)}


def model_part(model: Any, schema: Any, inputs: dict[str, Any], seed: int = 0
               ) -> dict[str, Any]:
    """``_embedding`` (images and texts only) and ``_predictions`` from encoded rows."""
    from layerwise.data.batching import first_len, take

    n = first_len(inputs)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(n, generator=g)[:EMBED_ROWS]
    part: dict[str, Any] = {}
    sub = take(inputs, idx)
    if schema.images or schema.texts:
        feats = embed(model, sub)
        if feats is not None and len(feats) >= 20:
            mean = feats.mean(0)
            _, _, vt = np.linalg.svd(feats - mean, full_matrices=False)
            comps = vt[:EMBED_DIMS]
            part["_embedding"] = {"mean": mean.round(5).tolist(),
                                  "components": comps.round(5).tolist(),
                                  "vectors": ((feats - mean) @ comps.T).round(4).tolist()}
    idx = torch.randperm(n, generator=g)[:PREDICT_ROWS]
    preds: dict[str, list[str]] = {}
    if not any(e.kind in ("category", "binary") for e in schema.outputs):
        idx = idx[:0]  # nothing to count (and a language model's logits are large)
    for s in range(0, len(idx), 256):
        for k, v in predicted(model, schema, take(inputs, idx[s:s + 256])).items():
            preds.setdefault(k, []).extend(v)
    if preds:
        part["_predictions"] = {k: _frequencies(v) for k, v in preds.items()}
    return part


def numeric_samples(schema: Any, raw: dict[str, np.ndarray], seed: int = 0
                    ) -> dict[str, list[float]]:
    rng = np.random.default_rng(seed)
    out = {}
    for enc in schema.inputs:
        if enc.kind == "numeric" and enc.name in raw:
            v = np.asarray(raw[enc.name], dtype=float)
            v = v[np.isfinite(v)]
            if len(v) > SAMPLE:
                v = v[rng.choice(len(v), SAMPLE, replace=False)]
            out[enc.name] = [round(float(x), 6) for x in v]
    return out


def extend(reference: dict[str, Any], ds: Any, model: Any, seed: int = 0) -> dict[str, Any]:
    """The data stage's reference plus samples, embeddings and predictions (see module)."""
    ref = {k: dict(v) if isinstance(v, dict) else v for k, v in reference.items()}
    if ds.raw_train is not None:
        for name, sample in numeric_samples(ds.schema, ds.raw_train, seed).items():
            if name in ref:
                ref[name]["sample"] = sample
    held = ds.validation if ds.validation is not None and len(ds.validation) else ds.test
    if held is not None and len(held):
        model.eval()
        ref.update(model_part(model, ds.schema, held.inputs, seed))
    return ref


def read(model_dir: str | Path) -> dict[str, Any]:
    from layerwise.errors import ArtifactError

    p = Path(model_dir) / REFERENCE
    if not p.is_file():
        raise ArtifactError(f"{model_dir}: no {REFERENCE}; the model was saved without "
                            "training statistics")
    try:
        ref = json.loads(p.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ArtifactError(f"{p}: not valid JSON ({e})") from None
    if not isinstance(ref, dict):
        raise ArtifactError(f"{p}: expected a JSON object")
    return ref


def add_to_model(predictor: Any, rows: Any, seed: int = 0) -> Path:
    """Add ``_embedding`` and ``_predictions`` (and numeric samples) from ``rows`` — data
    the model was not trained on — to a model directory's reference.json."""
    from layerwise.data.build import encode_rows

    table = predictor.to_table(rows)
    data, table = encode_rows(predictor.schema, table, targets=False)
    ref = read(predictor.artifact.path)
    values, _ = predictor.schema.parse(table, targets=False, bad=_no_bad())
    for name, sample in numeric_samples(predictor.schema, values, seed).items():
        ref.setdefault(name, {})["sample"] = sample
    ref.update(model_part(predictor.model, predictor.schema, data.inputs, seed))
    path = Path(predictor.artifact.path) / REFERENCE
    write_text(path, dumps_json(ref, indent=1))
    return path


def _no_bad() -> Any:
    from layerwise.data.sources import BadRows

    return BadRows()
