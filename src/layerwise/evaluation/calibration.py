"""Calibration of class probabilities: ECE / MCE, reliability bins, temperature scaling.

A classifier is calibrated when, of the predictions it makes with confidence 0.8, 80% are
right. The expected calibration error (ECE) is the gap between confidence and accuracy
averaged over confidence bins, weighted by their rows; the maximum calibration error (MCE)
is the largest gap of a bin. torchmetrics computes both (top-label, equal-width bins).

Temperature scaling (Guo et al. 2017) divides the logits by one number ``T`` fitted to
minimise the negative log-likelihood on held-out rows: ``T > 1`` softens an over-confident
model. The predicted class never changes (``argmax(z / T) = argmax(z)``), so accuracy stays
the same while the probabilities become honest.

A binary output's logits are ``[N]`` (one sigmoid logit): :func:`class_probs` turns them
into ``[N, 2]`` probabilities so that both kinds share one path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from layerwise.errors import ConfigError

BINS = 15  # the usual number of equal-width confidence bins (Guo et al. 2017)


def class_probs(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Probabilities ``[N, C]`` from logits ``[N, C]`` (softmax) or ``[N]`` (sigmoid)."""
    z = logits.float() / temperature
    if z.ndim == 1:
        p = z.sigmoid()
        return torch.stack([1 - p, p], dim=1)
    return z.softmax(dim=1)


def calibration_errors(probs: torch.Tensor, labels: torch.Tensor, bins: int = BINS
                       ) -> dict[str, float]:
    """``{"ece", "mce"}`` of probabilities ``[N, C]`` against labels ``[N]`` (torchmetrics)."""
    try:
        from torchmetrics.functional.classification import multiclass_calibration_error
    except ImportError:  # the `eval` extra
        raise ConfigError("calibration metrics need torchmetrics: pip install "
                          "'layerwise[eval]'") from None
    y = labels.long()
    c = probs.shape[1]
    return {"ece": float(multiclass_calibration_error(probs, y, c, n_bins=bins, norm="l1")),
            "mce": float(multiclass_calibration_error(probs, y, c, n_bins=bins, norm="max"))}


def reliability_bins(probs: torch.Tensor, labels: torch.Tensor, bins: int = BINS
                     ) -> list[dict[str, float | None]]:
    """Per equal-width confidence bin: its edges, rows, mean confidence and accuracy
    (the points of a reliability diagram; empty bins have ``None``)."""
    conf, pred = probs.max(dim=1)
    hit = (pred == labels.long()).float()
    edges = torch.linspace(0, 1, bins + 1)
    # bin i holds confidences in (edges[i], edges[i+1]]; 0 goes to the first bin
    idx = (torch.bucketize(conf, edges, right=False) - 1).clamp(0, bins - 1)
    out = []
    for i in range(bins):
        m = idx == i
        n = int(m.sum())
        out.append({"low": float(edges[i]), "high": float(edges[i + 1]), "count": n,
                    "confidence": float(conf[m].mean()) if n else None,
                    "accuracy": float(hit[m].mean()) if n else None})
    return out


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 200
                    ) -> float:
    """The temperature ``T`` minimising the NLL of ``logits / T`` on ``labels``.

    Optimised over ``log T`` (so ``T`` stays positive) with L-BFGS; a convex problem in
    ``1/T``, so a few dozen iterations settle it.
    """
    if len(labels) == 0:
        raise ConfigError("temperature scaling needs held-out rows; the split is empty")
    z = logits.detach().float().clone()  # clone: outputs made under inference_mode
    y = labels.detach().clone()  # cannot enter autograd as they are
    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def nll() -> torch.Tensor:
        opt.zero_grad()
        scaled = z / log_t.exp()
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(scaled, y.float())
                if z.ndim == 1 else torch.nn.functional.cross_entropy(scaled, y.long()))
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(nll)
    t = float(log_t.detach().exp())
    if not torch.isfinite(torch.tensor(t)):
        raise ConfigError("temperature scaling did not converge (non-finite temperature)")
    return t


def report(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0,
           bins: int = BINS) -> dict[str, Any]:
    """ECE, MCE, NLL and reliability bins of ``logits / temperature`` on ``labels``."""
    probs = class_probs(logits, temperature)
    nll = torch.nn.functional.nll_loss(probs.clamp_min(1e-12).log(), labels.long())
    return {**calibration_errors(probs, labels, bins), "nll": float(nll),
            "temperature": temperature, "bins": reliability_bins(probs, labels, bins)}


def reliability_diagram(curves: dict[str, dict[str, Any]], path: str | Path,
                        title: str = "reliability") -> Path:
    """Accuracy against confidence per bin, one line per entry of ``curves``
    (e.g. ``{"before": report(...), "after": report(...)}``), with the diagonal of a
    perfectly calibrated model and each curve's ECE in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfectly calibrated")
    for name, rep in curves.items():
        pts = [(b["confidence"], b["accuracy"]) for b in rep["bins"] if b["count"]]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=4,
                label=f"{name} (ECE {rep['ece']:.3f}, T={rep['temperature']:.2f})")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
