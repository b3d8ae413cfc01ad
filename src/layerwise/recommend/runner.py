"""A recommendation run: interactions → leave-last-out split → recommender → the Trainer
(checkpoints, exact resume, early stopping) → ranking metrics → the artifact.

The run directory is the one every run has (layerwise.runs): config.yaml, checkpoints/,
model/, metrics.json, history.csv, curves.png. The validation ranking (HR@k and NDCG@k of
each user's validation item among sampled candidates) is scored every epoch, so
``train.early_stopping.monitor: val_ndcg`` works.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from layerwise.config import RecommendConfig
from layerwise.evaluation.plots import learning_curves
from layerwise.recommend import data as rdata
from layerwise.recommend.families import build_recommender, training_data
from layerwise.recommend.models import _Recommender
from layerwise.recommend.ranking import ranking_data, ranking_report
from layerwise.recommend.recommender import Recommender
from layerwise.runs import (
    Run,
    TrackEpochs,
    check_run,
    lineage,
    recording_failure,
    start_run,
    training_summary,
    write_history,
    write_metrics,
)
from layerwise.training import Callback, FitResult, Trainer


def train_recommender(config: RecommendConfig, *, output: str | Path | None = None,
                      resume: bool = False, callbacks: list[Callback] | None = None,
                      progress: str | None = None, overwrite: bool = False) -> Run:
    """Train a recommender from its config and write the run directory."""
    cfg = config
    if progress:
        cfg.train.progress = progress  # type: ignore[assignment]
    rd = check_run(cfg, output, resume=resume, overwrite=overwrite)
    t0 = time.perf_counter()
    data = rdata.build(cfg.interactions)  # before anything is written: bad data leaves none
    train = training_data(cfg.model, data)
    validation = ranking_data(data, cfg, "validation") if len(data.validation) else None
    t_data = time.perf_counter() - t0
    torch.manual_seed(cfg.seed)
    model = build_recommender(cfg.model, data, cfg.negatives, cfg.ranking.k)
    start_run(rd, cfg, resume=resume, overwrite=overwrite, data_hash=data.data_hash)
    with recording_failure(rd):
        trainer = Trainer(cfg.train, callbacks=[*(callbacks or []), TrackEpochs(rd)],
                          checkpoint_dir=rd.checkpoints, resume=resume and rd.has_checkpoint())
        fit = trainer.fit(model, train, validation)
        run = Run(rd.path, cfg, history=fit.history, interrupted=fit.interrupted,
                           fit=fit)
        write_history(rd.history, fit.history)
        if not fit.interrupted:
            run.metrics = _finish(rd, cfg, data, model, fit, t_data)
    return run


def _finish(rd: Any, cfg: RecommendConfig, data: rdata.Interactions, model: _Recommender,
            fit: FitResult, t_data: float) -> dict[str, Any]:
    """Score validation and test, save the artifact, metrics.json and curves."""
    model.to("cpu")
    scores = {s: ranking_report(model, data, cfg, s) for s in ("validation", "test")
              if len(getattr(data, s))}
    n_params = sum(p.numel() for p in model.parameters())
    metrics = {**scores, "training": training_summary(fit, t_data, n_params),
               "choices": fit.choices,
               "data": {"users": len(data.users), "items": data.n_items,
                        "train": len(data.train), "validation": len(data.validation),
                        "test": len(data.test), "data_hash": data.data_hash}}
    Recommender.from_data(model, cfg, data).save(
        rd.model, metrics={k: v for k, v in scores.items()},
        lineage=lineage(cfg, data_hash=data.data_hash),
        extra={"data_hash": data.data_hash, "parameters": n_params})
    write_metrics(rd.metrics, metrics)
    learning_curves(fit.history, rd.curves)
    return metrics
