"""Evaluation of the generative families: per-split objectives, anomaly thresholds, samples.

- ``prepare``: an autoencoder with ``model.anomaly`` trains and validates on normal rows
  only; the test split keeps every row.
- ``split_metrics``: the means of a model's per-row terms (loss, reconstruction, KL, ...)
  over a split, with a fixed seed so noisy objectives (diffusion) score the same each time.
- ``anomaly_report``: the threshold is the (1 - fpr) quantile of the scores of the normal
  validation rows; it is stored in the model (``threshold`` buffer, saved in the artifact).
  The test split gets ROC AUC, average precision and precision/recall at the threshold.
- ``sample_report``: a sample grid PNG and the sample-quality figures of
  :mod:`layerwise.evaluation.judge` (Fréchet distance on a classifier's features and, for
  class-conditional models, the share of samples classified as the requested class).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from layerwise.data.batching import TensorData, take
from layerwise.data.build import Dataset
from layerwise.data.features import CategoryEncoder
from layerwise.errors import ConfigError

SAMPLES = 1000  # samples scored by the judge (and real rows for the floor)


def _role_index(ds: Dataset, name: str) -> tuple[int, CategoryEncoder]:
    for j, enc in enumerate(ds.schema.category):
        if enc.name == name:
            return j, enc  # type: ignore[return-value]
    raise ConfigError(f"{name!r} is not a category input")


def prepare(cfg: Any, ds: Dataset) -> Dataset:
    """Keep only the normal rows of train and validation for an anomaly autoencoder."""
    anomaly = getattr(cfg.model, "anomaly", None)
    if anomaly is None:
        return ds
    j, enc = _role_index(ds, anomaly.label)
    vocab = [str(v) for v in enc.vocab]
    missing = sorted(set(anomaly.normal) - set(vocab))
    if missing:
        raise ConfigError(f"model.anomaly.normal names values {missing} that the column "
                          f"{anomaly.label!r} does not have; its values: {vocab}")
    normal = torch.tensor([vocab.index(v) for v in anomaly.normal])

    def keep(data: TensorData) -> TensorData:
        mask = torch.isin(data.inputs["category"][:, j], normal)
        return data.subset(torch.nonzero(mask).flatten())

    train = keep(ds.train)
    if not len(train):
        raise ConfigError(f"no training rows have {anomaly.label} in {anomaly.normal}")
    info = {**ds.info, "anomaly": {"normal": anomaly.normal, "train_rows": len(train)}}
    validation = keep(ds.validation) if ds.validation is not None else None
    return dataclasses.replace(ds, train=train, validation=validation, info=info)


def is_normal(cfg: Any, ds: Dataset, data: TensorData) -> torch.Tensor:
    anomaly = cfg.model.anomaly
    j, enc = _role_index(ds, anomaly.label)
    vocab = [str(v) for v in enc.vocab]
    normal = torch.tensor([vocab.index(v) for v in anomaly.normal])
    return torch.isin(data.inputs["category"][:, j], normal)


@torch.inference_mode()
def split_metrics(model: torch.nn.Module, data: TensorData, seed: int = 0,
                  batch_size: int = 512) -> dict[str, float]:
    """Means of the model's per-row terms over ``data`` (a fixed seed for noisy ones)."""
    model.eval()
    sums: dict[str, float] = {}
    n = len(data)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for s in range(0, n, batch_size):
            out = model(take(data.inputs, torch.arange(s, min(n, s + batch_size))))
            for k, v in out.items():
                if v.dim() == 1:
                    sums[k] = sums.get(k, 0.0) + float(v.double().sum())
    return {k: v / max(1, n) for k, v in sums.items()} | {"count": n}


@torch.inference_mode()
def scores(model: Any, data: TensorData, batch_size: int = 1024) -> torch.Tensor:
    model.eval()
    n = len(data)
    return torch.cat([model.score(take(data.inputs, torch.arange(s, min(n, s + batch_size))))
                      for s in range(0, n, batch_size)]).float()


def anomaly_report(model: Any, cfg: Any, ds: Dataset) -> dict[str, Any]:
    """Choose and store the threshold; score the test split."""
    from sklearn.metrics import (
        average_precision_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    fpr = cfg.model.anomaly.fpr
    ref = ds.validation if ds.validation is not None and len(ds.validation) else ds.train
    ref_scores = scores(model, ref).numpy()
    threshold = float(np.quantile(ref_scores, 1.0 - fpr))
    model.threshold.fill_(threshold)
    out: dict[str, Any] = {"threshold": threshold, "target_fpr": fpr,
                           "threshold_from": "validation" if ref is ds.validation else "train",
                           "threshold_rows": len(ref)}
    if ds.test is None or not len(ds.test):
        return out
    s = scores(model, ds.test).numpy()
    y = (~is_normal(cfg, ds, ds.test)).numpy().astype(int)  # 1: anomaly
    flag = (s > threshold).astype(int)
    out.update({"test_rows": len(y), "test_anomalies": int(y.sum()),
                "flagged": int(flag.sum())})
    if 0 < y.sum() < len(y):
        out.update({"roc_auc": float(roc_auc_score(y, s)),
                    "average_precision": float(average_precision_score(y, s)),
                    "precision": float(precision_score(y, flag, zero_division=0)),
                    "recall": float(recall_score(y, flag, zero_division=0)),
                    "false_positive_rate": float(flag[y == 0].mean())})
    return out


def sample_grid(model: Any, path: Path, *, rows: int = 8, cols: int = 8, seed: int = 0,
                steps: int | None = None, order: list[int] | None = None) -> Path:
    """A PNG grid of samples; a class-conditional model gets one row per class, in
    ``order`` (encoded class indices; default 1..n, the encoder's frequency order)."""
    classes = model.spec.classes
    labels = None
    if classes:
        order = order or list(range(1, classes))  # encoded classes 1..n (0: unknown)
        rows = len(order)
        labels = torch.tensor(order).repeat_interleave(cols)
    g = torch.Generator().manual_seed(seed)
    with torch.inference_mode():
        x = model.sample(rows * cols, labels=labels, steps=steps, generator=g)
    write_grid(x, path, cols)
    return path


def write_grid(x: torch.Tensor, path: Path, cols: int, pad: int = 2) -> None:
    """Images ``[N, C, H, W]`` in [0, 1] → one PNG, ``cols`` per row."""
    from PIL import Image

    n, c, h, w = x.shape
    rows = math.ceil(n / cols)
    canvas = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad, c), dtype=np.float32)
    arr = x.permute(0, 2, 3, 1).float().clamp(0, 1).numpy()
    for i in range(n):
        r, q = divmod(i, cols)
        canvas[pad + r * (h + pad): pad + r * (h + pad) + h,
               pad + q * (w + pad): pad + q * (w + pad) + w] = arr[i]
    img = (canvas * 255).round().astype(np.uint8)
    img = img[:, :, 0] if c == 1 else img
    scale = max(1, 256 // max(h, w) // 2)
    im = Image.fromarray(img)
    im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, format="PNG")


def report(model: Any, cfg: Any, ds: Dataset, out_dir: Path,
           samples: int = SAMPLES) -> dict[str, Any]:
    """Everything a generative run adds to metrics.json (and files in ``out_dir``)."""
    out: dict[str, Any] = {}
    if getattr(cfg.model, "anomaly", None) is not None and hasattr(model, "score"):
        out["anomaly"] = anomaly_report(model, cfg, ds)
    if model.spec.is_image and _can_sample(model):
        out["samples_png"] = str(sample_grid(model, out_dir / "samples.png", seed=cfg.seed,
                                             order=class_order(cfg, ds)))
        from layerwise.evaluation.judge import sample_quality

        out["quality"] = sample_quality(model, cfg, ds, n=samples, seed=cfg.seed)
    return out


def class_order(cfg: Any, ds: Dataset) -> list[int] | None:
    """Encoded indices of the condition's classes, sorted by value (numbers numerically)."""
    if cfg.model.condition is None:
        return None
    from layerwise.inference.generative import value_key

    _, enc = _role_index(ds, cfg.model.condition)
    return sorted(range(1, len(enc.vocab)), key=lambda i: value_key(str(enc.vocab[i])))


def _can_sample(model: Any) -> bool:
    return str(getattr(model.cfg, "family", "")) in ("vae", "gan", "diffusion")
