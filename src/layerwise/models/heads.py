"""Output heads, one per output type: a linear layer, its loss, quick metrics, decoding.

==========  ===============  ===================================  =====================
type        head output      loss                                 prediction
==========  ===============  ===================================  =====================
category    logits [B, n]    cross-entropy (smoothing, weights)   softmax probabilities
binary      logit [B]        BCE with logits (pos_weight)         sigmoid probability
numeric     value [B]        MSE / MAE / Huber (scaled targets)   value (unscaled later)
next_token  logits [B,T,V]   cross-entropy per real token         next-token distribution
sequence    logits [B,L,V]   cross-entropy per target token       decoded by seq2seq
==========  ===============  ===================================  =====================
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class Head(nn.Module):
    kind = ""

    def __init__(self, name: str, in_features: int, out: int, loss_weight: float) -> None:
        super().__init__()
        self.name = name
        self.linear = nn.Linear(in_features, out)
        self.loss_weight = loss_weight

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(h)


class CategoryHead(Head):
    kind = "category"

    def __init__(self, name: str, in_features: int, n: int, loss_weight: float = 1.0,
                 label_smoothing: float = 0.0, weight: torch.Tensor | None = None) -> None:
        super().__init__(name, in_features, n, loss_weight)
        self.label_smoothing = label_smoothing
        self.register_buffer("class_weight", weight if weight is not None else torch.ones(n))

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out.float(), y, weight=self.class_weight,
                               label_smoothing=self.label_smoothing)

    def metrics(self, out: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        pred = out.argmax(1)
        return {"accuracy": (pred == y).float().mean().item(),
                "macro_f1": macro_f1(y.cpu().numpy(), pred.cpu().numpy(), out.shape[1])}

    def probabilities(self, out: torch.Tensor) -> torch.Tensor:
        return out.float().softmax(dim=1)


def macro_f1(y: np.ndarray, pred: np.ndarray, classes: int) -> float:
    """Macro-F1 over all ``classes``, as the evaluation reports it (scikit-learn's
    ``f1_score(average="macro", labels=range(classes), zero_division=0)``), from three
    counts per class, so a head with many classes costs O(classes), not a confusion
    matrix. The validation metric and the bootstrap intervals (evaluation/bootstrap.py)
    both call it."""
    tp = np.bincount(y[pred == y], minlength=classes)
    both = np.bincount(pred, minlength=classes) + np.bincount(y, minlength=classes)
    return float(np.mean(np.divide(2 * tp, both, out=np.zeros(classes), where=both > 0)))


class BinaryHead(Head):
    kind = "binary"

    def __init__(self, name: str, in_features: int, loss_weight: float = 1.0,
                 pos_weight: float | None = None, threshold: float = 0.5) -> None:
        super().__init__(name, in_features, 1, loss_weight)
        self.threshold = threshold
        self.register_buffer("pos_weight", torch.tensor(pos_weight or 1.0))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(h).squeeze(1)

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(out.float(), y, pos_weight=self.pos_weight)

    def metrics(self, out: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        pred = (out.float().sigmoid() >= self.threshold).float()
        return {"accuracy": (pred == y).float().mean().item()}

    def probabilities(self, out: torch.Tensor) -> torch.Tensor:
        return out.float().sigmoid()


class NumericHead(Head):
    kind = "numeric"

    def __init__(self, name: str, in_features: int, loss_weight: float = 1.0,
                 loss: str = "mse", scale: float = 1.0) -> None:
        super().__init__(name, in_features, 1, loss_weight)
        self.loss_name = loss
        self.register_buffer("scale", torch.tensor(float(scale)))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(h).squeeze(1)

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fn = {"mse": F.mse_loss, "mae": F.l1_loss, "huber": F.huber_loss}[self.loss_name]
        return fn(out.float(), y)

    def metrics(self, out: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        err = (out.float() - y) * self.scale  # back in the target's own units
        return {"mae": err.abs().mean().item(), "rmse": err.pow(2).mean().sqrt().item()}


class NextTokenHead(nn.Module):
    """A language model's output: ``project`` (the backbone's tied embedding) maps states
    ``[B, T, C]`` to logits ``[B, T, V]``; it owns no weights. Targets ``[B, T_max]`` hold
    -100 where there is no next token."""

    kind = "next_token"
    IGNORE = -100

    def __init__(self, name: str, project: Any, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.name, self.loss_weight = name, loss_weight
        self.project = project  # a bound method, not a module: nothing is registered twice

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.project(h)

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        y = y[:, : out.shape[1]]  # the batch was cut to its longest text
        return F.cross_entropy(out.flatten(0, 1).float(), y.flatten(), ignore_index=self.IGNORE)

    def row_stats(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per row: summed negative log-likelihood, correct argmax tokens, tokens ``[B, 3]``."""
        y = y[:, : out.shape[1]]
        valid = y != self.IGNORE
        nll = F.cross_entropy(out.float().transpose(1, 2), y.clamp(min=0), reduction="none")
        hit = (out.argmax(-1) == y) & valid
        return torch.stack([(nll * valid).sum(1), hit.sum(1).float(), valid.sum(1).float()], 1)

    def metrics(self, out: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        stats = out if out.dim() == 2 else self.row_stats(out, y)  # logits or compacted
        nll, hit, n = stats.sum(0).tolist()
        return {"accuracy": hit / max(n, 1.0), "nats_per_token": nll / max(n, 1.0)}


class SequenceHead(nn.Module):
    """A sequence-to-sequence output: ``project`` (the decoder's tied embedding) maps
    decoder states ``[B, L+1, C]`` to logits ``[B, L+1, V]``. Targets ``[B, L+2]`` are
    ``<bos> t1 .. tn <eos> <pad> ..``: position ``t`` predicts ``targets[:, t + 1]``, and
    padding (id 0) is ignored. Owns no weights."""

    kind = "sequence"
    PAD = 0

    def __init__(self, name: str, project: Any, loss_weight: float = 1.0,
                 label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.name, self.loss_weight, self.label_smoothing = name, loss_weight, label_smoothing
        self.project = project  # a bound method, not a module: nothing is registered twice

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.project(h)

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out.flatten(0, 1).float(), y[:, 1:].flatten(),
                               ignore_index=self.PAD, label_smoothing=self.label_smoothing)

    def row_stats(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per row: summed negative log-likelihood, correct tokens, tokens, and whether
        every token is right ``[B, 4]`` (teacher forced: exactly when greedy decoding
        reproduces the target)."""
        y = y[:, 1:]
        valid = y != self.PAD
        nll = F.cross_entropy(out.float().transpose(1, 2), y, reduction="none")
        hit = (out.argmax(-1) == y) & valid
        n = valid.sum(1)
        return torch.stack([(nll * valid).sum(1), hit.sum(1).float(), n.float(),
                            (hit.sum(1) == n).float()], 1)

    def metrics(self, out: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        stats = out if out.dim() == 2 else self.row_stats(out, y)  # logits or compacted
        nll, hit, n, exact = stats.sum(0).tolist()
        return {"accuracy": hit / max(n, 1.0), "exact_match": exact / max(len(stats), 1),
                "nats_per_token": nll / max(n, 1.0)}


def build_head(cfg: Any, in_features: int, desc_out: tuple[str, int],
               class_weight: torch.Tensor | None = None, scale: float = 1.0) -> Head:
    kind, n = desc_out
    if kind == "category":
        return CategoryHead(cfg.name, in_features, n, cfg.loss_weight, cfg.label_smoothing,
                            class_weight)
    if kind == "binary":
        return BinaryHead(cfg.name, in_features, cfg.loss_weight, cfg.pos_weight, cfg.threshold)
    return NumericHead(cfg.name, in_features, cfg.loss_weight, cfg.loss, scale)
