"""Ranking metrics of the leave-last-out protocol, and the popularity baseline.

Each row ranks one held-out item (column 0) among sampled items the user never interacted
with. Its rank is the number of candidates scored strictly higher, plus half the number
tied with it (so a model that scores everything alike is not credited with a perfect
rank). HR@k is the share of rows whose rank is below k; NDCG@k averages
``1 / log2(rank + 2)`` over those rows (one relevant item: the ideal DCG is 1).
"""

from __future__ import annotations

import math

import torch


def ranks(scores: torch.Tensor) -> torch.Tensor:
    """The 0-based rank of column 0 in each row of ``scores [B, C]`` (ties count half)."""
    target = scores[:, :1]
    higher = (scores[:, 1:] > target).sum(1).float()
    tied = (scores[:, 1:] == target).sum(1).float()
    return higher + tied / 2


def hit_ratio(rank: torch.Tensor, k: int) -> float:
    """Share of rows whose held-out item ranks within the top ``k``."""
    return float((rank < k).float().mean()) if rank.numel() else math.nan


def ndcg(rank: torch.Tensor, k: int) -> float:
    """Mean ``1 / log2(rank + 2)`` over rows ranked within ``k`` (0 elsewhere)."""
    if not rank.numel():
        return math.nan
    gain = torch.where(rank < k, 1.0 / torch.log2(rank + 2.0), torch.zeros_like(rank))
    return float(gain.mean())


def ranking_metrics(scores: torch.Tensor, k: int) -> dict[str, float]:
    """``{"hr": HR@k, "ndcg": NDCG@k}`` of scores whose column 0 is the held-out item."""
    r = ranks(scores)
    return {"hr": hit_ratio(r, k), "ndcg": ndcg(r, k)}


def popularity_scores(counts: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """The popularity baseline: each candidate scored by its training interactions."""
    return counts[candidates].float()
