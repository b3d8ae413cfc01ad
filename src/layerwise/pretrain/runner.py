"""``layerwise pretrain CONFIG``: self-supervised pre-training of a family's encoder.

    config → data (the training split; with ``split.unlabelled`` the rows ``labelled``
    drops) → the labels put aside → backbone + objective (objectives.py) → Trainer
    (checkpoints, exact resume) → run folder with an encoder artifact in ``model/``

The artifact is the ordinary model folder (artifact.py): ``layerwise.json`` with
``"kind": "encoder"``, the config and the fitted feature schema (the tokenizer travels
here, as JSON), and ``model.safetensors`` with the backbone's weights named as in a
supervised model (``backbone.*``), so that ``model.init_from`` copies them by name. The
objective's head (projection or token prediction) is not saved.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from layerwise import artifact as art
from layerwise.config import Config, parse
from layerwise.config.pretrain import PretrainConfig
from layerwise.data.augment import Augmenter, is_active
from layerwise.data.batching import TensorData
from layerwise.data.build import Dataset, build
from layerwise.data.encoder_artifact import KIND
from layerwise.errors import ConfigError
from layerwise.models import build_model
from layerwise.pretrain.objectives import (
    ContrastiveModel,
    MaskedTokenModel,
    MaskTokens,
    TwoViews,
)
from layerwise.pretrain.warm_start import warm_start
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
from layerwise.training import Callback, Trainer


def objective_for(cfg: Config) -> str:
    """The objective ``pretrain.objective`` names, or (auto) the inputs call for; refused
    where the family cannot run it."""
    pre = cfg.pretrain or PretrainConfig()
    kinds = {f.type for f in cfg.inputs}
    objective = pre.objective
    if objective == "auto":
        objective = "masked_tokens" if "text" in kinds else \
            "contrastive" if "image" in kinds else ""
    need = {"masked_tokens": ("transformer", "text"), "contrastive": ("cnn", "image")}
    if objective not in need:
        raise ConfigError("pretrain: no objective fits these inputs; masked_tokens needs a "
                          "text input, contrastive an image input")
    family, kind = need[objective]
    if cfg.model.family != family or kind not in kinds:
        raise ConfigError(f"pretrain.objective {objective} pre-trains model family {family} "
                          f"over a {kind} input; got family {cfg.model.family} over "
                          f"{', '.join(sorted(kinds))}")
    return objective


def _rows(cfg: Config, ds: Dataset) -> TensorData:
    """The training rows without their labels (a seeded sample with ``pretrain.rows``)."""
    data = TensorData(ds.train.inputs, {})
    rows = (cfg.pretrain or PretrainConfig()).rows
    if rows and rows < len(data):
        g = torch.Generator().manual_seed(cfg.seed + 16)
        data = data.subset(torch.sort(torch.randperm(len(data), generator=g)[:rows]).values)
    return data


def objective_model(cfg: Config, ds: Dataset, objective: str
                    ) -> tuple[nn.Module, Augmenter]:
    """The backbone a supervised run would build (same seed, same names) inside its
    objective, and the augmenter that draws its masks or views."""
    torch.manual_seed(cfg.seed)
    backbone = build_model(cfg.model, cfg.outputs, ds.schema.describe()).backbone
    pre = cfg.pretrain or PretrainConfig()
    if objective == "masked_tokens":
        text = ds.schema.texts[0]
        if len(ds.schema.texts) != 1:
            raise ConfigError("pretrain.objective masked_tokens reads exactly one text "
                              f"input; got {[t.name for t in ds.schema.texts]}")
        return (MaskedTokenModel(backbone, text.name),
                MaskTokens(text.name, pre.mask_rate, text.size, cfg.seed))
    image = ds.schema.images[0]
    a = image.cfg.augment  # type: ignore[attr-defined]
    if not is_active(a):
        raise ConfigError(f"pretrain.objective contrastive compares two augmented views: set "
                          f"inputs.{image.name}.augment (crop, shift, flip, brightness, "
                          "contrast and/or noise)")
    return (ContrastiveModel(backbone, image.name, pre.projection_dim, pre.temperature),
            TwoViews(image.name, a, cfg.seed))


def pretrain(config: Config | dict[str, Any] | str | Path, *,
             output: str | Path | None = None, overrides: list[str] | None = None,
             resume: bool = False, overwrite: bool = False, progress: str | None = None,
             callbacks: list[Callback] | None = None) -> Run:
    """Pre-train the config's encoder on its training rows' inputs; see the module
    docstring. Returns the run (``run.model_dir`` is the encoder artifact)."""
    cfg = parse(config, overrides)
    if not isinstance(cfg, Config) or cfg.model.generative:
        raise ConfigError("layerwise pretrain reads a supervised config (a cnn over images "
                          "or a transformer over text)")
    if progress:
        cfg.train.progress = progress  # type: ignore[assignment]
    objective = objective_for(cfg)
    rd = check_run(cfg, output, resume=resume, overwrite=overwrite)
    t_data = time.perf_counter()
    ds = build(cfg)
    rows = _rows(cfg, ds)
    t_data = time.perf_counter() - t_data
    model, augment = objective_model(cfg, ds, objective)
    started = warm_start(model, cfg.model.init_from) if cfg.model.init_from else None
    start_run(rd, cfg, resume=resume, overwrite=overwrite, data_hash=ds.data_hash)
    with recording_failure(rd):
        trainer = Trainer(cfg.train, callbacks=[*(callbacks or []), TrackEpochs(rd)],
                          checkpoint_dir=rd.checkpoints,
                          resume=resume and rd.has_checkpoint(), augment=augment)
        fit = trainer.fit(model, rows, None)
        run = Run(rd.path, cfg, history=fit.history, interrupted=fit.interrupted, fit=fit)
        write_history(rd.history, fit.history)
        if not fit.interrupted:
            run.metrics = _finish(rd.path, cfg, ds, model, fit, objective, len(rows), t_data,
                                  started)
    return run


def _finish(path: Path, cfg: Config, ds: Dataset, model: nn.Module, fit: Any, objective: str,
            rows: int, t_data: float, started: dict[str, Any] | None) -> dict[str, Any]:
    """The encoder artifact (backbone only) and metrics.json; returns the metrics."""
    model.to("cpu").to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    holder = nn.Module()
    holder.backbone = model.backbone  # named as in a supervised model: backbone.*
    n_params = sum(p.numel() for p in holder.parameters())
    summary = {"objective": objective, "rows": rows,
               "final_loss": fit.history[-1]["train_loss"] if fit.history else None,
               "first_loss": fit.history[0]["train_loss"] if fit.history else None,
               "init_from": started}
    made = lineage(cfg, data_hash=ds.data_hash)
    art.save(path / "model", config=cfg, schema=ds.schema, model=holder,
             metrics={"pretrain": summary}, lineage=made,
             extra={"kind": KIND, "objective": objective, "parameters": n_params,
                    "choices": {k: fit.choices[k] for k in ("precision", "memory_format",
                                                            "batching")}})
    metrics = {"pretrain": summary, "training": training_summary(fit, t_data, n_params),
               "choices": fit.choices, "data": ds.info}
    write_metrics(path / "metrics.json", metrics)
    return metrics
