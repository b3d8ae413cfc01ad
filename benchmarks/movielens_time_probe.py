"""Probe: a trained MovieLens recommender's test scores plus two time signals.

    python benchmarks/movielens_time_probe.py RUN/model [CONFIG]

The signals: the log-ratio of how often a rated film is ``a`` years old at rating time
against a uniform catalogue draw, and the log count of the film's training ratings in the
730 days before the request. Their weights are chosen on validation by grid; the figures
are in docs/benchmarks.md (issue 17)."""

from __future__ import annotations

import itertools
import sys

import pandas as pd
import torch

from layerwise.config import load_yaml, parse
from layerwise.recommend import data as rdata
from layerwise.recommend.metrics import ranking_metrics
from layerwise.recommend.ranking import candidate_scores, ranking_data
from layerwise.recommend.recommender import Recommender

WINDOW_DAYS = 730


def main(model_dir: str, config: str = "examples/movielens_sasrec.yaml") -> None:
    cfg = parse(load_yaml(config))
    d = rdata.build(cfg.interactions)
    df = rdata.read(cfg.interactions)
    model = Recommender.load(model_dir).model
    users = df[cfg.interactions.user].astype(str).to_numpy()
    times = df[cfg.interactions.time].astype(float).to_numpy()
    split = rdata.leave_last_out(users, times)
    uix = {u: i + 1 for i, u in enumerate(d.users)}
    counts = torch.bincount(d.train[:, 1], minlength=d.n_items)
    year = d.item_year.long()
    train_t = torch.tensor(times[split == 0])
    train_year = torch.tensor(pd.to_datetime(times[split == 0], unit="s").year.to_numpy())
    order = torch.argsort(train_t)
    sorted_t, sorted_item = train_t[order], d.train[:, 1][order]
    pos = (train_year - year[d.train[:, 1]]).clamp(-5, 60) + 5
    draw = torch.randint(0, d.n_items, (len(pos),), generator=torch.Generator().manual_seed(0))
    neg = (train_year - year[draw]).clamp(-5, 60) + 5
    hp = torch.bincount(pos, minlength=66).float() + 1
    hn = torch.bincount(neg, minlength=66).float() + 1
    age_ratio = (hp / hp.sum()).log() - (hn / hn.sum()).log()

    def signals(name: str, code: int) -> tuple[torch.Tensor, ...]:
        rows = ranking_data(d, cfg, name)
        cands = rows.inputs["candidates"]
        held = d.validation if name == "validation" else d.test
        when = {uix[u]: t for u, t, s in zip(users, times, split) if s == code}
        qt = torch.tensor([when[int(u)] for u in held[:, 0]])
        qy = torch.tensor(pd.to_datetime(qt.numpy(), unit="s").year.to_numpy())
        scores = candidate_scores(model, rows)
        age = age_ratio[(qy[:, None] - year[cands]).clamp(-5, 60) + 5]
        window = torch.zeros_like(scores)
        for r in range(len(cands)):
            lo = torch.searchsorted(sorted_t, qt[r] - WINDOW_DAYS * 86400)
            hi = torch.searchsorted(sorted_t, qt[r])
            recent = torch.bincount(sorted_item[lo:hi], minlength=d.n_items)
            window[r] = (recent[cands[r]].float() + 1).log()
        return scores, (counts[cands].float() + 1).log(), age, window

    val, test = signals("validation", 1), signals("test", 2)
    print("model  val", ranking_metrics(val[0], 10), "test", ranking_metrics(test[0], 10))
    best = None
    for w in itertools.product([0, 0.5, 1, 2], repeat=3):
        def mix(x: tuple[torch.Tensor, ...], w: tuple[float, ...] = w) -> torch.Tensor:
            return x[0] + w[0] * x[1] + w[1] * x[2] + w[2] * x[3]
        got = ranking_metrics(mix(val), 10)
        if best is None or got["hr"] > best[0]["hr"]:
            best = (got, w, ranking_metrics(mix(test), 10))
    print("best weights on validation (popularity, age, window):", best[1])
    print("  val", best[0], "test", best[2])


if __name__ == "__main__":
    main(*sys.argv[1:])
