"""Prediction with generative models: anomaly scores, latent vectors, samples.

- ``predict(rows)`` of an autoencoder returns ``{"score", "threshold", "anomaly"}`` per row
  (only ``score`` when it was trained without ``model.anomaly``).
- ``embed(rows)``: latent vectors (autoencoder code, VAE posterior mean).
- ``sample(n, label=...)``: new images in [0, 1]; ``label`` is a class value as in the data.

Columns with a role need not be given: a missing condition or anomaly-label column reads as
the unknown value (the model never reads an anomaly label anyway).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from layerwise.data.batching import TensorData, take
from layerwise.data.build import encode_rows
from layerwise.data.table import Table
from layerwise.errors import ConfigError

if TYPE_CHECKING:
    from layerwise.inference.predictor import Predictor

ABSENT = "\x00absent"  # fills an optional role column; encodes as the unknown value


def is_generative(p: Predictor) -> bool:
    return bool(getattr(p.model, "generative", False))


def encode(p: Predictor, rows: Any) -> TensorData:
    table = p.to_table(rows)
    missing = [e.name for e in p.schema.category if e.name not in table.columns]
    if missing:
        cols = dict(table.columns)
        cols.update({m: np.array([ABSENT] * len(table), dtype=object) for m in missing})
        table = Table(cols, table.origin)
    data, _ = encode_rows(p.schema, table, targets=False)
    return data


@torch.inference_mode()
def _batched(fn: Any, data: TensorData, batch_size: int) -> torch.Tensor:
    n = len(data)
    return torch.cat([fn(take(data.inputs, torch.arange(s, min(n, s + batch_size))))
                      for s in range(0, n, batch_size)]).float()


def predict(p: Predictor, rows: Any, batch_size: int = 1024) -> list[dict[str, Any]]:
    if not hasattr(p.model, "score"):
        raise ConfigError(f"model family {p.config.model.family} does not predict rows; use "
                          "sample() / `layerwise sample` (or embed() / `layerwise embed`)")
    scores = _batched(p.model.score, encode(p, rows), batch_size).tolist()
    threshold = float(p.model.threshold)  # type: ignore[arg-type]
    if threshold != threshold:  # NaN: trained without model.anomaly
        return [{"score": s} for s in scores]
    return [{"score": s, "threshold": threshold, "anomaly": s > threshold} for s in scores]


def embed(p: Predictor, rows: Any, batch_size: int = 1024) -> np.ndarray:
    if not is_generative(p) or not hasattr(p.model, "encode"):
        raise ConfigError(f"model family {p.config.model.family} has no encoder to embed rows "
                          "with (autoencoder and vae have)")
    return _batched(p.model.encode, encode(p, rows), batch_size).numpy()


def _vocab(p: Predictor) -> list[str]:
    """The condition's classes in encoder order (encoded index = position + 1)."""
    name = getattr(p.config.model, "condition", None)
    if name is None:
        return []
    enc = next(e for e in p.schema.category if e.name == name)
    return [str(v) for v in enc.vocab[1:]]  # type: ignore[attr-defined]


def value_key(v: str) -> tuple[int, float, str]:
    """Sort key for class values: numbers by value first, then text."""
    try:
        return (0, float(v), v)
    except ValueError:
        return (1, 0.0, v)


def classes(p: Predictor) -> list[str]:
    """The classes a class-conditional model can be asked for, sorted (numbers by value)."""
    return sorted(_vocab(p), key=value_key)


@torch.inference_mode()
def sample(p: Predictor, n: int, *, label: Any = None, steps: int | None = None,
           seed: int | None = None) -> np.ndarray:
    if not is_generative(p) or p.config.model.family not in ("vae", "gan", "diffusion"):
        raise ConfigError("sample needs a generative model (vae, gan or diffusion); this "
                          f"model's family is {p.config.model.family}")
    if n < 1 or (steps is not None and steps < 1):
        raise ConfigError(f"sample expects n >= 1 and steps >= 1; got n={n}, steps={steps}")
    labels = None
    if label is not None:
        names = _vocab(p)
        if not names:
            raise ConfigError("this model is not class-conditional: drop the class")
        if str(label) not in names:
            raise ConfigError(f"unknown class {label!r}; classes: {', '.join(classes(p))}")
        labels = torch.full((n,), names.index(str(label)) + 1, dtype=torch.long)
    g = torch.Generator().manual_seed(seed if seed is not None else 0)
    return p.model.sample(n, labels=labels, steps=steps,  # type: ignore[operator]
                          generator=g).float().numpy()
