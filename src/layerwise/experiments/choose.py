"""Choose between a small table's candidate models by cross-validation (``layerwise init``).

On a few hundred rows the validation split is too small to tell models apart (57 rows of
breast_cancer: every variant of the MLP scored 56 of 57), and which model wins depends on
the table: a linear model on one, an MLP on another. :func:`choose` scores each candidate
by stratified k-fold cross-validation over the rows training may use — the run's training
and validation splits; **the test split never takes part** — and returns the one with the
lower mean held-out loss (a proper score: on a few hundred rows accuracies tie where losses
do not), the proposed model winning ties::

    >>> from layerwise.experiments.choose import choose, linear       # doctest: +SKIP
    >>> c = choose("breast_cancer.yaml", {"mlp": None, "linear": linear})  # doctest: +SKIP
    >>> c.best, c.scores["linear"]                                    # doctest: +SKIP
    ('linear', [0.978, 0.967, ...])

Each fold trains a candidate through the Trainer with the config's own settings (early
stopping on a stratified eighth of the fold's training part), seeded by the run seed, so a
choice is repeatable. See docs/decisions.md, "init on small tables".
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from layerwise import api
from layerwise.config import Config, parse
from layerwise.data.batching import InMemoryBatches, TensorData, cat
from layerwise.data.build import build
from layerwise.errors import ConfigError
from layerwise.training import Trainer

Variant = Callable[[Config], Config] | None  # None: the config as it is
METRICS = {"binary": "accuracy", "category": "accuracy", "numeric": "rmse"}


@dataclass
class Choice:
    """The candidates' fold scores and the one chosen."""

    metric: str                                  # reported beside the loss
    rows: int                                    # the rows the folds were dealt from
    scores: dict[str, list[float]] = field(default_factory=dict)  # the metric per fold
    losses: dict[str, list[float]] = field(default_factory=dict)  # the loss per fold
    best: str = ""

    def mean(self, name: str) -> float:
        return statistics.fmean(self.scores[name])

    def describe(self) -> str:
        """One line: every candidate's mean metric and mean loss, the chosen one first."""
        parts = [f"{n} {self.mean(n):.4f} (loss {statistics.fmean(self.losses[n]):.4f})"
                 for n in sorted(self.scores, key=lambda n: n != self.best)]
        return (f"{len(next(iter(self.scores.values())))}-fold CV {self.metric} on "
                f"{self.rows:,} rows of the training and validation splits: " + ", ".join(parts))


def linear(cfg: Config) -> Config:
    """The config's MLP without hidden layers: a (generalised) linear model."""
    return cfg.model_copy(update={"model": cfg.model.model_copy(update={"hidden": []})},
                          deep=True)


def choose(config: str | Path | Config, candidates: dict[str, Variant], folds: int = 5
           ) -> Choice:
    """Score each candidate (a name → a change of the config) by ``folds``-fold CV over the
    run's training and validation rows; the first candidate wins ties."""
    cfg = parse(config) if not isinstance(config, Config) else config
    if not isinstance(cfg, Config) or len(cfg.outputs) != 1 or \
            cfg.outputs[0].type not in METRICS:
        raise ConfigError("choosing by cross-validation needs one binary, category or "
                          "numeric output")
    metric = METRICS[cfg.outputs[0].type]
    ds = build(cfg)
    parts = [p for p in (ds.train, ds.validation) if p is not None and len(p)]
    pool = TensorData(cat([p.inputs for p in parts]), cat([p.targets for p in parts]))
    out = cfg.outputs[0].name
    labels = None if cfg.outputs[0].type == "numeric" else \
        pool.targets[out].numpy().round().astype(int)
    choice = Choice(metric, len(pool))
    for train_idx, test_idx in _folds(len(pool), labels, folds, cfg.seed):
        fit_idx, stop_idx = _hold_out(train_idx, labels, cfg.seed)
        for name, variant in candidates.items():
            c = variant(cfg) if variant else cfg
            loss, score = _score(c, ds, pool.subset(fit_idx), pool.subset(stop_idx),
                                 pool.subset(test_idx), metric)
            choice.losses.setdefault(name, []).append(loss)
            choice.scores.setdefault(name, []).append(score)
    choice.best = min(candidates, key=lambda n: (round(statistics.fmean(choice.losses[n]),
                                                       6), list(candidates).index(n)))
    return choice


def _folds(n: int, labels: np.ndarray | None, folds: int, seed: int
           ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    from sklearn.model_selection import KFold, StratifiedKFold

    if labels is not None and np.bincount(labels).min(initial=folds) >= folds:
        split = StratifiedKFold(folds, shuffle=True, random_state=seed).split(labels, labels)
    else:
        split = KFold(folds, shuffle=True, random_state=seed).split(np.zeros(n))
    return [(torch.from_numpy(a), torch.from_numpy(b)) for a, b in split]


def _hold_out(idx: torch.Tensor, labels: np.ndarray | None, seed: int
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """An eighth of a fold's training rows for early stopping (stratified where it can)."""
    from sklearn.model_selection import train_test_split

    strat = labels[idx.numpy()] if labels is not None else None
    if strat is not None and np.unique(strat, return_counts=True)[1].min() < 2:
        strat = None
    fit, stop = train_test_split(idx.numpy(), test_size=0.125, random_state=seed + 1,
                                 stratify=strat)
    return torch.from_numpy(np.sort(fit)), torch.from_numpy(np.sort(stop))


def _score(cfg: Config, ds: Any, fit: TensorData, stop: TensorData, test: TensorData,
           metric: str) -> tuple[float, float]:
    """(held-out loss, held-out metric) of one candidate trained on one fold."""
    cfg = cfg.model_copy(deep=True)
    api.family_defaults(cfg)
    cfg.train.progress = "quiet"  # type: ignore[assignment]
    model = api.build_for(cfg, ds)
    trainer = Trainer(cfg.train)
    trainer.fit(model, fit, stop)
    held = trainer.evaluate(model, InMemoryBatches(test, 1024, shuffle=False))  # one pass
    return float(held["val_loss"]), float(held[f"val_{metric}"])
