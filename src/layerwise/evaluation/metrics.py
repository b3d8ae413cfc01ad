"""Full evaluation metrics from model outputs (scikit-learn does the arithmetic).

Classification: accuracy, macro-F1, per-class precision/recall/F1/support, confusion matrix
(and ROC AUC for binary outputs). Regression: MAE, RMSE, R², in the target's own units.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from layerwise.data.build import Schema
from layerwise.data.features import BinaryEncoder, CategoryEncoder, NumericEncoder
from layerwise.data.text import NextTokenEncoder
from layerwise.evaluation import sequences, speech


def classification(y_true: np.ndarray, y_pred: np.ndarray, labels: list[Any],
                   scores: np.ndarray | None = None) -> dict[str, Any]:
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    idx = list(range(len(labels)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=idx, zero_division=0)
    out: dict[str, Any] = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=idx, average="macro",
                                   zero_division=0)),
        "per_class": {str(lab): {"precision": float(p[i]), "recall": float(r[i]),
                                 "f1": float(f[i]), "support": int(s[i])}
                      for i, lab in enumerate(labels)},
        "labels": [str(lab) for lab in labels],
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=idx).tolist(),
    }
    if scores is not None and len(labels) == 2 and len(np.unique(y_true)) == 2:
        out["roc_auc"] = float(roc_auc_score(y_true, scores))
    return out


def regression(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    return {"mae": float(mean_absolute_error(y_true, y_pred)),
            "rmse": float(np.sqrt(mean_squared_error(y_true, y_pred))),
            "r2": float(r2_score(y_true, y_pred)) if len(y_true) > 1 else float("nan")}


def evaluate_outputs(schema: Schema, outputs: dict[str, torch.Tensor],
                     targets: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Metrics per output; a single-output model gets its metrics at the top level."""
    per: dict[str, Any] = {}
    for enc in schema.outputs:
        out, y = outputs[enc.name].float(), targets[enc.name]  # y: a dict for forecasts
        if isinstance(enc, CategoryEncoder):
            per[enc.name] = classification(y.numpy(), out.argmax(1).numpy(), enc.vocab)
        elif isinstance(enc, BinaryEncoder):
            prob = out.sigmoid().numpy()
            pred = (prob >= enc.cfg.threshold).astype(np.int64)
            per[enc.name] = classification(y.numpy().astype(np.int64), pred, enc.labels(), prob)
        elif isinstance(enc, NumericEncoder):
            per[enc.name] = regression(enc.decode(y), enc.decode(out))
        elif isinstance(enc, NextTokenEncoder):  # out: per-row (nll sum, correct, tokens)
            nll, hit, n = out.sum(0).tolist()
            per[enc.name] = {"nats_per_token": nll / max(n, 1.0),
                             "perplexity": float(np.exp(nll / max(n, 1.0))),
                             "accuracy": hit / max(n, 1.0), "tokens": int(n)}
        elif enc.kind == "forecast":  # y: {"values", "naive"} (see data/series.py)
            per[enc.name] = sequences.forecast(out, y, enc)
        elif enc.kind == "sequence":  # out: per row (nll sum, correct, tokens, exact match)
            nll, hit, n, exact = out.sum(0).tolist()
            per[enc.name] = {"exact_match": exact / max(len(out), 1),
                             "token_accuracy": hit / max(n, 1.0),
                             "nats_per_token": nll / max(n, 1.0), "tokens": int(n),
                             "beams": enc.cfg.beams}
        elif enc.kind == "tags":
            per[enc.name] = sequences.tagging(out, y, enc)
        elif enc.kind == "ctc":  # y: {"labels", "lengths"} (see data/transcript.py)
            per[enc.name] = speech.transcription(out, y, enc)
        per[enc.name].setdefault("count", int(len(y)))
    return per[schema.outputs[0].name] if len(per) == 1 else per


def headline(metrics: dict[str, Any]) -> dict[str, float]:
    """The scalar metrics only (for tables and history)."""
    return {k: v for k, v in metrics.items() if isinstance(v, int | float)}
