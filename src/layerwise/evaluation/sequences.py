"""Metrics of forecasts (MAE, RMSE, MASE, the seasonal-naive baseline) and of token tags
(token accuracy, macro-F1 over tags, whole-sentence accuracy)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def forecast(out: torch.Tensor, y: dict[str, torch.Tensor], enc: Any) -> dict[str, Any]:
    """``out``, ``y["values"]``, ``y["naive"]``: ``[N, H]`` in scaled units (shift-free: the
    errors only need the scale). MASE divides by the in-sample MAE of the seasonal-naive
    forecast on the training steps (Hyndman & Koehler 2006); ``mae_vs_seasonal_naive``
    divides by the MAE of the seasonal-naive forecast of these very windows."""
    err = (out.float() - y["values"]).numpy().astype(np.float64) * enc.scale
    naive = (y["naive"] - y["values"]).numpy().astype(np.float64) * enc.scale
    mae, naive_mae = float(np.abs(err).mean()), float(np.abs(naive).mean())
    return {"mae": mae, "rmse": float(np.sqrt((err ** 2).mean())),
            "mase": mae / enc.mase_scale,
            "seasonal_naive_mae": naive_mae,
            "seasonal_naive_mase": naive_mae / enc.mase_scale,
            "mae_vs_seasonal_naive": mae / naive_mae if naive_mae > 0 else float("nan"),
            "season": enc.season, "horizon": enc.size,
            "mae_by_horizon": [round(float(v), 6) for v in np.abs(err).mean(axis=0)],
            "count": int(len(err))}


def tagging(out: torch.Tensor, y: torch.Tensor, enc: Any) -> dict[str, Any]:
    """``out [N, T, n]`` logits, ``y [N, T]`` tag ids with ``enc.IGNORE`` off the tokens."""
    from sklearn.metrics import f1_score, precision_recall_fscore_support

    valid = y != enc.IGNORE
    pred = out.float().argmax(-1)
    yt, yp = y[valid].numpy(), pred[valid].numpy()
    present = sorted(set(yt.tolist()))  # tags that occur in the data scored
    p, r, f, s = precision_recall_fscore_support(yt, yp, labels=present, zero_division=0)
    whole = ((pred == y) | ~valid).all(dim=1)
    return {"token_accuracy": float((yt == yp).mean()) if len(yt) else float("nan"),
            "macro_f1": float(f1_score(yt, yp, labels=present, average="macro",
                                       zero_division=0)) if len(yt) else float("nan"),
            "sentence_accuracy": float(whole.float().mean()),
            "per_tag": {enc.vocab[j]: {"precision": float(p[i]), "recall": float(r[i]),
                                       "f1": float(f[i]), "support": int(s[i])}
                        for i, j in enumerate(present)},
            "tokens": int(valid.sum()), "count": int(len(y)), **_spans(pred, y, valid, enc)}


def _spans(pred: torch.Tensor, y: torch.Tensor, valid: torch.Tensor, enc: Any
           ) -> dict[str, Any]:
    """Exact entity-span precision / recall / F1 (data/bio.py) when the tags are BIO."""
    from layerwise.data import bio

    if not bio.is_bio(enc.vocab):
        return {}
    rows = [(yr[v].tolist(), pr[v].tolist()) for yr, pr, v in zip(y, pred, valid, strict=True)]
    return bio.span_scores([[enc.vocab[j] for j in t] for t, _ in rows],
                           [[enc.vocab[j] for j in p] for _, p in rows])
