"""The recommender families that score a (user, item) pair: plain matrix factorisation,
NeuMF, and a two-tower model (the sequential family is in recommend/sequential.py, the
registry of all of them in recommend/families.py).

Each is an ``nn.Module`` the Trainer trains as it trains any other: ``forward(inputs)``
scores, ``loss(outputs, targets)`` and ``metrics(outputs, targets)``. Inputs:

- training: ``{"user": [B], "item": [B]}`` positives; in training mode the model draws
  ``negatives`` items per positive itself (from torch's global generator, which every
  checkpoint saves, so a resumed run draws the same ones), never a training positive of
  the user, and returns ``{"pos": [B], "neg": [B, k], "valid": [B, k]}``; the loss is
  binary cross-entropy over positives and negatives.
- ranking: ``{"user": [B], "candidates": [B, C]}`` with the held-out item first; returns
  ``{"scores": [B, C]}``; the metrics are HR@k and NDCG@k of the first column.

Users and items are indices: user 0 is the unknown user; items are catalogue indices,
mapped to id-embedding rows by the ``item_row`` buffer (0: an item with no training
interactions, scored from its features by the two-tower model).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from layerwise.config.recommend import MFConfig, NeuMFConfig, TwoTowerConfig
from layerwise.recommend.data import sample_negatives
from layerwise.recommend.metrics import ranking_metrics


class _Recommender(nn.Module):
    """What every family shares: the buffers of the catalogue and the training positives,
    negative sampling in training mode, the loss and the ranking metrics."""

    item_row: torch.Tensor  # buffers (registered in __init__)
    seen: torch.Tensor

    def __init__(self, n_users: int, item_row: torch.Tensor, seen: torch.Tensor,
                 negatives: int, k: int) -> None:
        super().__init__()
        self.n_users, self.n_items, self.negatives, self.k = n_users, len(item_row), \
            negatives, k
        self.n_rows = int(item_row.max()) + 1 if len(item_row) else 1
        self.register_buffer("item_row", item_row.long())
        self.register_buffer("seen", seen.long())   # sorted user * n_items + item

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Logits of (user, item) pairs of any matching shape: users [B] against items
        [B] or [B, C]."""
        raise NotImplementedError

    def known(self, user: int) -> torch.Tensor:
        """Catalogue items ``recommend`` leaves out for ``user``: their training items."""
        return self.seen[(self.seen // self.n_items) == user] % self.n_items

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        users = inputs["user"]
        if "candidates" in inputs:
            return {"scores": self.score(users, inputs["candidates"])}
        out = {"pos": self.score(users, inputs["item"])}
        if self.training:
            neg, valid = sample_negatives(users, self.n_items, self.seen, self.negatives)
            out.update(neg=self.score(users, neg.to(users.device)), valid=valid)
        return out

    def loss(self, outputs: dict[str, torch.Tensor], targets: Any) -> torch.Tensor:
        if "scores" in outputs:  # ranking rows: the held-out item is the one positive
            s = outputs["scores"].float()
            labels = torch.zeros_like(s)
            labels[:, 0] = 1.0
            return F.binary_cross_entropy_with_logits(s, labels)
        pos = outputs["pos"].float()
        total = F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos), reduction="sum")
        n = pos.numel()
        if "neg" in outputs:
            neg, valid = outputs["neg"].float(), outputs["valid"]
            each = F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg),
                                                      reduction="none")
            total = total + (each * valid).sum()
            n += int(valid.sum())
        return total / max(1, n)

    def metrics(self, outputs: dict[str, torch.Tensor], targets: Any) -> dict[str, float]:
        if "scores" not in outputs:
            return {}
        return ranking_metrics(outputs["scores"].float(), self.k)

    def _users(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Users shaped to broadcast against items (``[B]`` or ``[B, 1]``)."""
        return users.reshape(-1, *([1] * (items.dim() - 1)))


def _init(*embeddings: nn.Embedding) -> None:
    for e in embeddings:
        nn.init.normal_(e.weight, std=0.05)


def _mlp(widths: list[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class MF(_Recommender):
    """``score = <p_u, q_i> + b_u + b_i + b``: plain matrix factorisation."""

    def __init__(self, cfg: MFConfig, base: dict[str, Any]) -> None:
        super().__init__(**base)
        self.user = nn.Embedding(self.n_users + 1, cfg.dim)
        self.item = nn.Embedding(self.n_rows, cfg.dim)
        self.user_bias = nn.Embedding(self.n_users + 1, 1)
        self.item_bias = nn.Embedding(self.n_rows, 1)
        self.bias = nn.Parameter(torch.zeros(1))
        _init(self.user, self.item)
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        rows, u = self.item_row[items], self._users(users, items)
        dot = (self.user(u) * self.item(rows)).sum(-1)
        return dot + self.user_bias(u)[..., 0] + self.item_bias(rows)[..., 0] + self.bias


class NeuMF(_Recommender):
    """Generalised MF (elementwise product) beside an MLP over concatenated user and item
    vectors, each with its own embeddings, joined by one linear layer (He et al. 2017)."""

    def __init__(self, cfg: NeuMFConfig, base: dict[str, Any]) -> None:
        super().__init__(**base)
        self.gmf_user = nn.Embedding(self.n_users + 1, cfg.dim)
        self.gmf_item = nn.Embedding(self.n_rows, cfg.dim)
        self.mlp_user = nn.Embedding(self.n_users + 1, cfg.dim)
        self.mlp_item = nn.Embedding(self.n_rows, cfg.dim)
        _init(self.gmf_user, self.gmf_item, self.mlp_user, self.mlp_item)
        self.mlp = _mlp([2 * cfg.dim, *cfg.hidden], cfg.dropout)
        self.out = nn.Linear(cfg.dim + ([2 * cfg.dim, *cfg.hidden][-1]), 1)

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        rows, u = self.item_row[items], self._users(users, items)
        gmf = self.gmf_user(u) * self.gmf_item(rows)                      # [B, (C,) d]
        pu = self.mlp_user(u).expand(*rows.shape, -1)
        mlp = self.mlp(torch.cat([pu, self.mlp_item(rows)], dim=-1))     # [B, (C,) h]
        return self.out(torch.cat([gmf, mlp], dim=-1))[..., 0]


class TwoTower(_Recommender):
    """``score = <user_tower(u), item_tower(id, genres, year)>`` plus an item bias from
    the item's features: an unseen item is scored from its genres and year, an unknown
    user from the unknown-user vector, which id dropout trains."""

    item_genres: torch.Tensor  # buffers
    item_year: torch.Tensor

    def __init__(self, cfg: TwoTowerConfig, base: dict[str, Any], genres: torch.Tensor,
                 year: torch.Tensor) -> None:
        super().__init__(**base)
        self.id_dropout = cfg.id_dropout
        self.register_buffer("item_genres", genres.float())
        known = year[year > 0]
        mean, std = (known.mean(), known.std().clamp(min=1.0)) if known.numel() > 1 else \
            (torch.tensor(0.0), torch.tensor(1.0))
        # [n_items, 2]: the standardised year and whether it is known
        self.register_buffer("item_year", torch.stack(
            [torch.where(year > 0, (year - mean) / std, 0.0), (year > 0).float()], -1))
        d, g = cfg.dim, genres.shape[1]
        self.user = nn.Embedding(self.n_users + 1, d)
        self.item = nn.Embedding(self.n_rows, d)
        _init(self.user, self.item)
        self.user_tower = nn.Sequential(_mlp([d, *cfg.hidden], cfg.dropout),
                                        nn.Linear([d, *cfg.hidden][-1], d))
        self.item_tower = nn.Sequential(_mlp([d + g + 2, *cfg.hidden], cfg.dropout),
                                        nn.Linear([d + g + 2, *cfg.hidden][-1], d))
        self.item_bias = nn.Linear(g + 2, 1)

    def _drop(self, ids: torch.Tensor) -> torch.Tensor:
        if not self.training or not self.id_dropout:
            return ids
        return torch.where(torch.rand(ids.shape, device=ids.device) < self.id_dropout,
                           torch.zeros_like(ids), ids)

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        feats = torch.cat([self.item_genres[items], self.item_year[items]], dim=-1)
        iv = self.item_tower(torch.cat([self.item(self._drop(self.item_row[items])), feats],
                                       dim=-1))                           # [B, (C,) d]
        uv = self.user_tower(self.user(self._drop(self._users(users, items))))
        return (uv * iv).sum(-1) + self.item_bias(feats)[..., 0]
