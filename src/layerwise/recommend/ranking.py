"""The ranking evaluation of a recommender on a split: each user's held-out item among
sampled candidates (data.candidates), scored by HR@k and NDCG@k beside popularity. The
sequential family also reads each user's history up to (not including) the held-out item:
the training items for validation, those and the validation item for test."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from layerwise.config import RecommendConfig
from layerwise.config.recommend import SASRecConfig
from layerwise.data.batching import TensorData
from layerwise.errors import DataError
from layerwise.recommend import data as rdata
from layerwise.recommend.metrics import hit_ratio, ndcg, popularity_scores, ranking_metrics
from layerwise.recommend.models import _Recommender
from layerwise.recommend.sequential import user_histories

SALT = {"validation": 1, "test": 2}  # validation and test candidates are drawn apart
BEFORE = {"validation": "train", "test": "validation"}  # the history a held-out item follows


def ranking_data(data: rdata.Interactions, cfg: RecommendConfig, split: str) -> TensorData:
    """The ranking rows of ``split``: each held-out item first among its candidates."""
    held = data.validation if split == "validation" else data.test
    cands = rdata.candidates(held, data, cfg.ranking, SALT[split])
    inputs = {"user": held[:, 0], "candidates": cands, **context(data, cfg, split)}
    return TensorData(inputs, torch.ones(len(held)))


def context(data: rdata.Interactions, cfg: RecommendConfig, split: str
            ) -> dict[str, torch.Tensor]:
    """What the family reads besides the user, per held-out row of ``split``: for sasrec
    the ``history [U, max_length]`` before the held-out item; nothing for the others."""
    if not isinstance(cfg.model, SASRecConfig):
        return {}
    held = data.validation if split == "validation" else data.test
    return {"history": user_histories(data, BEFORE[split], cfg.model.max_length)[held[:, 0]]}


@torch.inference_mode()
def ranking_report(model: _Recommender, data: rdata.Interactions, cfg: RecommendConfig,
                   split: str) -> dict[str, Any]:
    """HR@k and NDCG@k of ``model`` on ``split``, beside the popularity baseline."""
    rows = ranking_data(data, cfg, split)
    scores = candidate_scores(model, rows)
    counts = torch.bincount(data.train[:, 1], minlength=data.n_items)
    k = cfg.ranking.k
    mine, pop = ranking_metrics(scores, k), ranking_metrics(
        popularity_scores(counts, rows.inputs["candidates"]), k)
    held = data.validation if split == "validation" else data.test
    full, full_pop = full_ranking(model, data, held, counts, k,
                                  extra={n: v for n, v in rows.inputs.items()
                                         if n not in ("user", "candidates")})
    return {f"hr@{k}": mine["hr"], f"ndcg@{k}": mine["ndcg"],
            f"popularity_hr@{k}": pop["hr"], f"popularity_ndcg@{k}": pop["ndcg"],
            f"full_hr@{k}": full["hr"], f"full_ndcg@{k}": full["ndcg"],
            f"full_popularity_hr@{k}": full_pop["hr"],
            f"full_popularity_ndcg@{k}": full_pop["ndcg"],
            "users": len(rows), "candidates": cfg.ranking.candidates,
            "protocol": f"held-out item among {cfg.ranking.candidates} sampled "
                        f"non-interacted items (seed {cfg.ranking.seed}); full_: among "
                        "every item the user never interacted with"}


@torch.inference_mode()
def candidate_scores(model: _Recommender, rows: TensorData, chunk: int = 1024
                     ) -> torch.Tensor:
    """``[U, 1 + candidates]`` float scores of :func:`ranking_data`'s rows, in eval mode
    (the model's mode is restored), ``chunk`` rows at a time."""
    was = model.training
    model.eval()
    try:
        parts = [model(_take(rows.inputs, s, chunk))["scores"].float()
                 for s in range(0, len(rows), chunk)]
    finally:
        model.train(was)
    return torch.cat(parts) if parts else \
        torch.zeros(0, rows.inputs["candidates"].shape[1])


@torch.inference_mode()
def full_ranking(model: _Recommender, data: rdata.Interactions, held: torch.Tensor,
                 counts: torch.Tensor, k: int, chunk: int = 128,
                 extra: dict[str, torch.Tensor] | None = None
                 ) -> tuple[dict[str, float], dict[str, float]]:
    """HR@k and NDCG@k of the model and of popularity when each held-out item is ranked
    among every catalogue item the user never interacted with (no sampling). ``extra``:
    the family's inputs per held-out row besides the user (:func:`context`)."""
    n = data.n_items
    items = torch.arange(n)
    mine: list[torch.Tensor] = []
    pop: list[torch.Tensor] = []
    for s in range(0, len(held), chunk):
        users, target = held[s:s + chunk, 0], held[s:s + chunk, 1]
        other = rdata.is_seen(data.seen, users[:, None] * n + items[None, :]) | \
            (items[None, :] == target[:, None])       # [B, n]: not a candidate
        more = {name: v[s:s + chunk] for name, v in (extra or {}).items()}
        scores = model.score(users, items.expand(len(users), n), **more).float()
        for sc, out in ((scores, mine), (counts.float().expand(len(users), n), pop)):
            t = sc.gather(1, target[:, None])
            higher = ((sc > t) & ~other).sum(1).float()
            tied = ((sc == t) & ~other).sum(1).float()
            out.append(higher + tied / 2)
    return ({"hr": hit_ratio(torch.cat(mine), k), "ndcg": ndcg(torch.cat(mine), k)},
            {"hr": hit_ratio(torch.cat(pop), k), "ndcg": ndcg(torch.cat(pop), k)}) \
        if mine else ({"hr": math.nan, "ndcg": math.nan}, {"hr": math.nan, "ndcg": math.nan})


def _take(inputs: dict[str, torch.Tensor], start: int, n: int) -> dict[str, torch.Tensor]:
    return {k: v[start:start + n] for k, v in inputs.items()}


def rebuild(cfg: RecommendConfig, data_hash: str | None, where: Path | None
            ) -> rdata.Interactions:
    """The run's interactions read again; refused when they changed since training."""
    data = rdata.build(cfg.interactions)
    if data_hash and data.data_hash != data_hash:
        raise DataError(f"{where}: the interactions changed since training (data hash "
                        f"{data.data_hash}, trained on {data_hash}); the test split would "
                        "not be the same rows")
    return data
