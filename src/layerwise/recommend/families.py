"""The recommender families by name, and what each trains on.

The pair families (mf, neumf, two_tower; recommend/models.py) train on (user, item)
positives; the sequential family (sasrec; recommend/sequential.py) on each user's
time-ordered training history. Both kinds answer the same ranking rows and share one
artifact (recommend/recommender.py).
"""

from __future__ import annotations

from typing import Any

import torch

from layerwise.config.recommend import RecommenderConfig, SASRecConfig, TwoTowerConfig
from layerwise.data.batching import TensorData
from layerwise.errors import UnknownNameError
from layerwise.recommend.data import Interactions
from layerwise.recommend.models import MF, NeuMF, TwoTower, _Recommender
from layerwise.recommend.sequential import SASRec, training_rows

FAMILIES = {"mf": MF, "neumf": NeuMF, "two_tower": TwoTower, "sasrec": SASRec}
"""The recommender families by their config's ``family``."""


def build_recommender(cfg: RecommenderConfig, data: Interactions, negatives: int, k: int
                      ) -> _Recommender:
    """The module of ``cfg``'s family for the encoded ``data``."""
    # negatives avoid the training positives only: held-out items stay unknown to it
    seen = torch.unique(data.train[:, 0] * data.n_items + data.train[:, 1])
    base = {"n_users": len(data.users), "item_row": data.item_row, "seen": seen,
            "negatives": negatives, "k": k}
    return make(cfg, base, data.item_genres, data.item_year)


def make(cfg: RecommenderConfig, base: dict[str, Any], genres: torch.Tensor | None = None,
         year: torch.Tensor | None = None) -> _Recommender:
    """The module of ``cfg``'s family from the shared settings ``base`` (users, catalogue
    rows, seen keys, negatives, k); the two-tower model also takes the items' ``genres``
    and ``year`` (from the data, or buffers the stored weights then overwrite)."""
    if cfg.family not in FAMILIES:
        raise UnknownNameError(f"unknown recommender family {cfg.family!r}; known: "
                               f"{', '.join(sorted(FAMILIES))}")
    if isinstance(cfg, TwoTowerConfig):
        return TwoTower(cfg, base, genres, year)
    return FAMILIES[cfg.family](cfg, base)


def training_data(cfg: RecommenderConfig, data: Interactions) -> TensorData:
    """The rows the family trains on: histories for sasrec, else (user, item) positives."""
    if isinstance(cfg, SASRecConfig):
        return training_rows(data, cfg.max_length, cfg.windows)
    return TensorData({"user": data.train[:, 0], "item": data.train[:, 1]},
                      torch.ones(len(data.train)))
