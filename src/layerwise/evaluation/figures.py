"""Evaluation figures and their numbers: confusion matrix, ROC / precision-recall curves
(binary, and one-vs-rest per class), regression residuals. scikit-learn computes the
curves, matplotlib draws them (headless); each figure's numbers are returned too, so a
report can redraw them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

MAX_POINTS = 200  # points kept per curve in the JSON (the figure uses them all)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def confusion_png(matrix: list[list[int]], labels: list[str], path: Path,
                  title: str = "confusion matrix") -> Path:
    """Counts per (true, predicted) pair, shaded by the share of the true class."""
    plt = _pyplot()
    m = np.asarray(matrix, dtype=float)
    share = m / np.maximum(m.sum(1, keepdims=True), 1)
    size = max(4.0, 0.55 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    if len(labels) <= 20:  # the counts themselves, while they stay legible
        for i in range(len(labels)):
            for j in range(len(labels)):
                ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if share[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the true class")
    return _save(fig, path)


def _thin(*cols: np.ndarray) -> list[list[float]]:
    """At most ``MAX_POINTS`` evenly spaced points of a curve, ends included."""
    n = len(cols[0])
    idx = np.unique(np.linspace(0, n - 1, min(n, MAX_POINTS)).round().astype(int))
    return [[round(float(c[i]), 6) for c in cols] for i in idx]


def class_curves(y: np.ndarray, probs: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """ROC and PR curves with their areas: the positive class of a binary output, else one
    curve per class (one-vs-rest) plus the macro averages of the areas."""
    from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

    classes = [1] if probs.shape[1] == 2 else list(range(probs.shape[1]))
    per: dict[str, Any] = {}
    for c in classes:
        truth = (y == c).astype(int)
        if truth.min() == truth.max():  # a class absent from (or alone in) the rows
            continue
        fpr, tpr, _ = roc_curve(truth, probs[:, c])
        prec, rec, _ = precision_recall_curve(truth, probs[:, c])
        per[labels[c]] = {"roc_auc": float(auc(fpr, tpr)),
                          "average_precision": float(average_precision_score(
                              truth, probs[:, c])),
                          "prevalence": float(truth.mean()),
                          "roc": _thin(fpr, tpr), "pr": _thin(rec, prec)}
    out: dict[str, Any] = {"kind": "binary" if len(classes) == 1 else "one-vs-rest",
                           "classes": per}
    if per:
        out["macro_roc_auc"] = float(np.mean([v["roc_auc"] for v in per.values()]))
        out["macro_average_precision"] = float(np.mean(
            [v["average_precision"] for v in per.values()]))
    return out


def curves_png(curves: dict[str, Any], path: Path, title: str) -> Path:
    """ROC (left) and precision-recall (right), one line per class."""
    plt = _pyplot()
    fig, (roc, pr) = plt.subplots(1, 2, figsize=(10, 4.4))
    for name, c in curves["classes"].items():
        pts = np.array(c["roc"])
        roc.plot(pts[:, 0], pts[:, 1], lw=1.2, label=f"{name} ({c['roc_auc']:.3f})")
        pts = np.array(c["pr"])
        pr.plot(pts[:, 0], pts[:, 1], lw=1.2,
                label=f"{name} ({c['average_precision']:.3f})")
    roc.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    roc.set(xlabel="false positive rate", ylabel="true positive rate",
            title=f"{title}: ROC (AUC)")
    pr.set(xlabel="recall", ylabel="precision", title=f"{title}: precision-recall (AP)")
    for ax in (roc, pr):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right" if ax is roc else "lower left")
    return _save(fig, path)


def residuals(y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """Residual (truth − prediction) statistics, in the target's units."""
    r = np.asarray(y, float) - np.asarray(pred, float)
    q = np.quantile(r, [0.05, 0.25, 0.5, 0.75, 0.95])
    return {"mean": float(r.mean()), "std": float(r.std()),
            "quantiles": dict(zip(["p05", "p25", "p50", "p75", "p95"], map(float, q))),
            "points": _thin(np.asarray(pred, float)[np.argsort(pred)],
                            r[np.argsort(pred)])}


def residuals_png(y: np.ndarray, pred: np.ndarray, path: Path, title: str) -> Path:
    """Residuals against the prediction (a trend means bias), predicted against true, and
    the residuals' histogram."""
    plt = _pyplot()
    y, pred = np.asarray(y, float), np.asarray(pred, float)
    r = y - pred
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    axes[0].scatter(pred, r, s=8, alpha=0.6)
    axes[0].axhline(0, color="grey", ls="--", lw=1)
    axes[0].set(xlabel="predicted", ylabel="residual (true − predicted)",
                title=f"{title}: residual vs predicted")
    lo, hi = float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))
    axes[1].scatter(y, pred, s=8, alpha=0.6)
    axes[1].plot([lo, hi], [lo, hi], color="grey", ls="--", lw=1)
    axes[1].set(xlabel="true", ylabel="predicted", title="predicted vs true")
    axes[2].hist(r, bins=30)
    axes[2].set(xlabel="residual", ylabel="rows", title="residuals")
    for ax in axes:
        ax.grid(alpha=0.3)
    return _save(fig, path)
