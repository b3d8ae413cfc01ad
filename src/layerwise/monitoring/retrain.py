"""``layerwise monitor MODEL LIVE --retrain CONFIG``: fine-tune the current model on newly
labelled rows; promote the result only if it beats the current model on held-out data.

- **New rows**: the labelled items of a server's review queue (``review.jsonl``) and/or a
  labelled data file (one holding the output columns). They are encoded with the current
  model's fitted schema — no refitting, so the candidate reads inputs exactly as the
  current model does — and split, seeded, into fine-tuning rows and held-out rows
  (``holdout``).
- **Fine-tuning**: the candidate starts from the current weights (loaded afresh through the
  artifact module) and trains with the Trainer under CONFIG's ``train`` section. Beside the
  new rows it sees ``replay`` times as many rows of CONFIG's training split, so it does
  not forget what it knew; CONFIG's validation split is the Trainer's validation data.
- **Held-out data**: the held-out new rows plus CONFIG's test split — the same rows for
  both models. The first output's metric decides: accuracy for a category or binary
  output (higher is better), MAE for a numeric one (lower is better). Only a strictly
  better candidate is promoted: written as a new run folder (``config.yaml``, ``model/``,
  ``retrain.json``) and, when the current model came from the registry as
  ``models:/NAME@ALIAS``, registered as the next version of NAME with ALIAS moved to it.
  Either way ``retrain.json`` in the output folder holds both figures.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from layerwise.errors import ConfigError, DataError
from layerwise.files import dumps_json, write_text
from layerwise.monitoring.labels import labelled_rows, read_lines

HIGHER = {"accuracy": True, "mae": False}


def new_rows(predictor: Any, review: Path | None, data: Any | None) -> Any:
    """The newly labelled rows, encoded with the current schema (a TensorData)."""
    from layerwise.data.build import encode_rows
    from layerwise.data.table import Table

    tables = []
    if review is not None:
        rows = labelled_rows(read_lines(review), predictor.schema, str(review))
        if rows:
            tables.append(predictor.to_table(rows))
    if data is not None:
        tables.append(predictor.to_table(data))
    if not tables:
        raise DataError(f"{review}: no labelled items yet (label some with label_review, "
                        "or give a labelled data file)")
    table = tables[0] if len(tables) == 1 else Table.concat(_common(tables))
    missing = [o.name for o in predictor.schema.outputs if o.name not in table.columns]
    if missing:
        raise DataError(f"{table.origin}: no column {missing[0]!r} (the labels to learn)")
    return encode_rows(predictor.schema, table, targets=True)[0]


def _common(tables: list[Any]) -> list[Any]:
    from layerwise.data.table import Table

    keep = [c for c in tables[0].columns if all(c in t.columns for t in tables[1:])]
    return [Table({c: t.column(c) for c in keep}, t.origin) for t in tables]


def _split(n: int, holdout: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    if n < 2:
        raise DataError(f"{n} labelled row: need at least 2 (some to learn, some to test)")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    held = max(1, min(n - 1, round(n * holdout)))
    return order[held:], order[:held]


def _cat(parts: list[Any]) -> Any:
    from layerwise.data.batching import TensorData

    parts = [p for p in parts if p is not None and len(p)]

    def join(trees: list[Any]) -> Any:
        if isinstance(trees[0], dict):
            return {k: join([t[k] for t in trees]) for k in trees[0]}
        return torch.cat(trees)
    return TensorData(join([p.inputs for p in parts]), join([p.targets for p in parts]))


def _old_split(schema: Any, values: dict[str, np.ndarray] | None, n: int | None, seed: int
               ) -> Any:
    """Up to ``n`` rows (all with None) of one of CONFIG's parsed splits, encoded with the
    current schema."""
    if not values:
        return None
    total = len(next(iter(values.values())))
    if n is not None and n < total:
        idx = np.random.default_rng(seed).choice(total, n, replace=False)
        values = {k: v[idx] for k, v in values.items()}
    return schema.encode(values) if total and n != 0 else None


def decide_metric(schema: Any) -> str:
    first = schema.outputs[0]
    if first.kind in ("category", "binary"):
        return "accuracy"
    if first.kind == "numeric":
        return "mae"
    raise ConfigError(f"--retrain compares models by accuracy or MAE; output {first.name!r} "
                      f"is {first.kind}")


@torch.inference_mode()
def score(model: Any, schema: Any, data: Any, metric: str, batch_size: int = 1024
          ) -> float:
    """The first output's ``metric`` of ``model`` on encoded ``data``."""
    from layerwise.data.batching import take
    from layerwise.evaluation.metrics import evaluate_outputs

    model.eval()
    n = len(data)
    outs = [model(take(data.inputs, torch.arange(s, min(n, s + batch_size))))
            for s in range(0, n, batch_size)]
    cat = {k: torch.cat([o[k] for o in outs]) for k in outs[0]}
    found = evaluate_outputs(schema, cat, data.targets)
    if len(schema.outputs) > 1:
        found = found[schema.outputs[0].name]
    return float(found[metric])


def _check_config(cfg: Any, schema: Any, where: str) -> None:
    """CONFIG must describe the same inputs and outputs as the current model."""
    have = ([e.name for e in schema.inputs], [e.name for e in schema.outputs])
    want = ([i.name for i in cfg.inputs], [o.name for o in cfg.outputs])
    if have != want:
        raise ConfigError(f"{where}: its inputs/outputs {want} differ from the model's "
                          f"{have}; fine-tuning keeps the model's own")


def fine_tune(current: Any, cfg: Any, new: Any, *, holdout: float = 0.3,
              replay: float = 1.0) -> dict[str, Any]:
    """Train the candidate and score both models on the same held-out rows; returns the
    candidate model and the figures (nothing is written)."""
    from layerwise import artifact as art
    from layerwise.data.augment import Augmenter
    from layerwise.data.build import build
    from layerwise.training import Trainer

    schema, seed = current.schema, cfg.seed
    tune_idx, held_idx = _split(len(new), holdout, seed)
    ds = build(cfg)  # CONFIG's splits, re-encoded below with the current model's schema
    old_train = _old_split(schema, ds.raw_train, int(round(replay * len(tune_idx))), seed)
    validation = _old_split(schema, ds.raw_validation, None, seed)
    test = _old_split(schema, ds.raw_test, None, seed)
    train = _cat([new.subset(tune_idx), old_train])
    held = _cat([new.subset(held_idx), test])
    candidate = art.load(current.artifact.path).model  # its own copy of the weights
    trainer = Trainer(cfg.train, augment=Augmenter({e.name: e.cfg.augment
                                                    for e in schema.images}, seed))
    fit = trainer.fit(candidate, train, validation)
    candidate.to("cpu").to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    metric = decide_metric(schema)
    figures = {"metric": metric, "held_out_rows": len(held),
               "held_out_new_rows": len(held_idx), "held_out_test_rows": len(test or []),
               "tuned_new_rows": len(tune_idx), "tuned_replayed_rows": len(old_train or []),
               "current": score(current.model, schema, held, metric),
               "candidate": score(candidate, schema, held, metric)}
    if len(held_idx) and test is not None and len(test):
        new_held = new.subset(held_idx)
        figures["on_new_rows"] = {"current": score(current.model, schema, new_held, metric),
                                  "candidate": score(candidate, schema, new_held, metric)}
    better = figures["candidate"] > figures["current"] if HIGHER[metric] else \
        figures["candidate"] < figures["current"]
    return {"model": candidate, "fit": fit, "better": bool(better), "figures": figures}


def _promote(current: Any, cfg: Any, result: dict[str, Any], out: Path, source: str
             ) -> dict[str, Any]:
    """Write the candidate as a new run folder; move the registry alias it came by."""
    from layerwise import artifact as art
    from layerwise.runs import lineage, open_run, recording_failure

    saved = current.config.model_copy(update={"train": cfg.train})  # the model it rebuilds
    run = open_run(saved, out)
    with recording_failure(run):
        reference = Path(current.artifact.path) / art.REFERENCE
        ref = None
        if reference.is_file():
            import json

            ref = json.loads(reference.read_text(encoding="utf-8"))
        figures = result["figures"]
        made = lineage(saved, retrained_from=str(current.artifact.path),
                       retrained_on_rows=figures["tuned_new_rows"])
        art.save(run.model, config=saved, schema=current.schema, model=result["model"],
                 metrics={"held_out": {figures["metric"]: figures["candidate"]}},
                 lineage=made, reference=ref,
                 extra={"parameters": sum(p.numel() for p in result["model"].parameters())})
    done: dict[str, Any] = {"model_dir": str(run.model)}
    if source.startswith("models:/"):
        done.update(_move_alias(source, run.model))
    return done


def _move_alias(source: str, model_dir: Path) -> dict[str, Any]:
    from layerwise.tracking.registry import parse_uri, register, set_alias
    from layerwise.tracking.store import open_store

    name, alias, _ = parse_uri(source)
    store = open_store()
    version = register(store, str(model_dir), name, description="layerwise monitor --retrain")
    if alias:
        set_alias(store, name, alias, version)
    return {"registered": f"models:/{name}/{version}",
            **({"alias": f"models:/{name}@{alias}"} if alias else {})}


def retrain(model: str | Path, config: Any, *, review: Path | None = None,
            data: Any | None = None, output: str | Path | None = None,
            holdout: float = 0.3, replay: float = 1.0) -> dict[str, Any]:
    """Fine-tune ``model`` (a folder or ``models:/NAME@ALIAS``) on the labelled review
    items in ``review`` and/or the labelled rows of ``data``; promote it if better (see the
    module docstring). Returns what ``retrain.json`` holds."""
    from layerwise.config import Config, parse
    from layerwise.inference.predictor import Predictor
    from layerwise.tracking.registry import resolve_model

    if not 0 < holdout < 1:
        raise ConfigError(f"holdout must lie between 0 and 1; got {holdout}")
    if replay < 0:
        raise ConfigError(f"replay must be >= 0; got {replay}")
    path = resolve_model(model)
    current = Predictor.load(path)
    cfg = parse(config)
    if not isinstance(cfg, Config):
        raise ConfigError(f"{config}: --retrain needs a supervised training config")
    _check_config(cfg, current.schema, str(config))
    new = new_rows(current, review, data)
    result = fine_tune(current, cfg, new, holdout=holdout, replay=replay)
    out = Path(output) if output else Path("runs") / (
        f"{cfg.name}-retrain-{time.strftime('%Y%m%d-%H%M%S')}")
    report: dict[str, Any] = {"current_model": str(path), "source": str(model),
                              "promoted": result["better"], **result["figures"]}
    if result["better"]:
        report.update(_promote(current, cfg, result, out, str(model)))
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "retrain.json", dumps_json(report, indent=2))
    report["report"] = str(out / "retrain.json")
    return report
