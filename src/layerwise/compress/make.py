"""``layerwise compress MODEL --method … --output DIR``: a smaller or faster child artifact,
under the accuracy guard.

    int8         matrices in int8, served by ONNX Runtime's dynamic int8 graph
    int8-static  int8 weights and activations (QDQ, calibrated on training rows): CNNs
    bf16         weights in bfloat16, run in bfloat16
    prune        ``--amount`` of every hidden layer's channels/neurons removed, fine-tuned
    distill      a student ``--width`` times as wide trained on the teacher's outputs

The child is built in a hidden folder beside ``--output``, scored against the parent on
the same rows (guard.py), and only then moved into place; a refusal removes it, so nothing
is written and the parent is never touched. The child's ``layerwise.json`` records its
lineage under ``compression``: the parent's path and weights hash, the method and its
settings, both scores.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from layerwise import artifact as art
from layerwise.compress import distill, guard, prune, quantize
from layerwise.config import Config, parse
from layerwise.data.augment import Augmenter
from layerwise.data.batching import take
from layerwise.data.build import Dataset, build, resolve_columns
from layerwise.errors import ConfigError
from layerwise.files import save_safetensors, write_text
from layerwise.inference.backends import weights_hash
from layerwise.inference.predictor import Predictor
from layerwise.models import build_model
from layerwise.training import Trainer

METHODS = ("int8", "int8-static", "bf16", "prune", "distill")


@dataclass
class Options:
    """Settings of one compression (the CLI's options)."""

    amount: float = 0.5         # prune: share of channels/neurons removed per layer
    max_drop: float = 1.0       # the guard: points of the main metric the child may lose
    epochs: int = 2             # prune / distill: epochs of (fine-)tuning
    lr_scale: float = 0.1       # prune: fine-tuning learning rate / the run's (trained weights)
    width: float = 0.5          # distill: the student's widths / the teacher's
    temperature: float = 4.0    # distill
    alpha: float = 0.7          # distill: weight of the soft term
    student: str | None = None  # distill: a config file for the student instead
    metric: str | None = None   # the guard's metric (default: accuracy / R²)
    data: str | None = None     # a labelled file for the guard instead of the validation split


def compress(model_dir: str | Path, method: str, output: str | Path,
             options: Options | None = None, *, overwrite: bool = False) -> dict[str, Any]:
    """Make, guard and write the child; returns its ``compression`` record."""
    opts = options or Options()
    src, out = Path(model_dir), Path(output)
    _check(src, method, out, overwrite)
    parent = Predictor.load(src, backend="eager")
    ds = build(parent.config) if opts.data is None or method in ("int8-static", "prune",
                                                                 "distill") else None
    rows = guard.validation_data(parent, opts.data, ds)
    metric = guard.main_metric(parent, opts.metric)
    before = guard.score(parent, rows, metric)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        settings = _make(method, parent, tmp, ds, opts)
        child = Predictor.load(tmp)
        after = guard.score(child, rows, metric)
        guard.check(metric, before, after, opts.max_drop, _describe(method, settings))
        record = {"parent": str(src.resolve()), "parent_hash": weights_hash(src),
                  "method": method, "settings": settings, "backend": child.backend,
                  "metric": {"name": metric, "parent": round(before, 4),
                             "child": round(after, 4), "max_drop": opts.max_drop,
                             "rows": len(rows)},
                  "weights_bytes": {"parent": (src / art.WEIGHTS).stat().st_size,
                                    "child": (tmp / art.WEIGHTS).stat().st_size}}
        art.update_meta(tmp, {"compression": record})
        write_text(tmp / art.CARD, child_card(src, record))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return record


def child_card(parent: Path, record: dict[str, Any]) -> str:
    """The child's model card: the parent's, with a section on how the child was made and
    what it lost (its lineage, for a reader who has only this folder)."""
    card = parent / art.CARD
    text = card.read_text(encoding="utf-8").rstrip("\n") if card.is_file() else \
        f"# Model card: {parent.name}"
    m, size = record["metric"], record["weights_bytes"]
    lines = ["", "", "## Compression", "",
             f"- method: {_describe(record['method'], record['settings'])}",
             f"- parent: {record['parent']} (weights `{record['parent_hash']}`)",
             f"- {m['name']}: parent {m['parent']}, this model {m['child']} on {m['rows']} "
             f"rows (guard: at most {m['max_drop']} lost)",
             f"- weights: {size['child']:,} bytes ({size['child'] / size['parent']:.1%} of "
             f"the parent's {size['parent']:,}); backend {record['backend']}",
             "- the evaluation above is the parent's: run `layerwise evaluate` on this "
             "folder for its own", ""]
    return text + "\n".join(lines)


def _describe(method: str, settings: dict[str, Any]) -> str:
    """``prune (amount=0.95, epochs=0)``: the method and its scalar settings."""
    flat = ", ".join(f"{k}={v}" for k, v in settings.items()
                     if isinstance(v, int | float | str) and v is not None)
    return f"{method} ({flat})" if flat else method


def _check(src: Path, method: str, out: Path, overwrite: bool) -> None:
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    art.read_meta(src)
    if out.resolve() == src.resolve() or src.resolve() in out.resolve().parents:
        raise ConfigError(f"--output {out} must be a new folder, not inside the parent model")
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--output {out} already exists; pass --overwrite to replace it")


def _make(method: str, parent: Predictor, tmp: Path, ds: Dataset | None,
          opts: Options) -> dict[str, Any]:
    """Write the child artifact into ``tmp``; returns the settings it was made with."""
    if method in ("int8", "int8-static", "bf16"):
        return _quantized(method, parent, tmp, ds)
    if ds is None:
        raise ConfigError(f"{method} trains: it needs the run's data")
    if method == "prune":
        return _pruned(parent, tmp, ds, opts)
    return _distilled(parent, tmp, ds, opts)


def _save(tmp: Path, parent: Predictor, cfg: Config, model: torch.nn.Module,
          extra: dict[str, Any], tensors: dict[str, torch.Tensor] | None = None) -> None:
    """The child's directory: the parent's schema, lineage and reference, new weights."""
    ref = parent.artifact.path / art.REFERENCE
    n_params = sum(p.numel() for p in model.parameters())
    art.save(tmp, config=cfg, schema=parent.schema, model=model,
             lineage=parent.meta.get("lineage", {}),
             reference=json.loads(ref.read_text(encoding="utf-8")) if ref.is_file() else None,
             extra={"parameters": n_params, "choices": parent.meta.get("choices", {}),
                    **extra})
    if tensors is not None:
        save_safetensors(tmp / art.WEIGHTS, tensors)


def _quantized(method: str, parent: Predictor, tmp: Path, ds: Dataset | None
               ) -> dict[str, Any]:
    info = quantize.settings(method)
    state = parent.model.state_dict()
    tensors = quantize.bf16_tensors(state) if method == "bf16" else \
        quantize.int8_tensors(state)
    _save(tmp, parent, parent.config, parent.model,
          {"compression": {"backend": info["compression_backend"]},
           "quantization": info["quantization"]}, tensors)
    if method == "int8-static":
        if ds is None:
            raise ConfigError("int8-static calibrates on the run's training rows")
        quantize.calibrate(tmp, art.load(tmp).model, ds.train, parent.config.seed)
    return info["quantization"]


def _tuned(cfg: Config, model: torch.nn.Module, ds: Dataset, epochs: int,
           trainer_cls: type[Trainer] = Trainer, lr_scale: float = 1.0, **kwargs: Any
           ) -> torch.nn.Module:
    """``epochs`` of training through the Trainer with the run's own settings, the
    learning rate times ``lr_scale`` (fine-tuning trained weights wants a gentler one)."""
    if epochs < 0 or lr_scale <= 0:
        raise ConfigError(f"--epochs must be >= 0 and --lr-scale > 0; got {epochs}, "
                          f"{lr_scale}")
    if epochs == 0:
        return model
    opt = cfg.train.optimizer.model_copy(update={"lr": cfg.train.optimizer.lr * lr_scale})
    train_cfg = cfg.train.model_copy(update={"epochs": epochs, "early_stopping": None,
                                             "optimizer": opt})
    images = {e.name: e.cfg.augment for e in ds.schema.images + ds.schema.audio}
    trainer = trainer_cls(train_cfg, augment=Augmenter(images, cfg.seed), **kwargs)
    trainer.fit(model, ds.train, ds.validation)
    return model.to("cpu").to(memory_format=torch.contiguous_format).eval()  # type: ignore[call-overload]


def _pruned(parent: Predictor, tmp: Path, ds: Dataset, opts: Options) -> dict[str, Any]:
    prune.check_family(parent.config)
    model = copy.deepcopy(parent.model)
    rows = ds.validation if ds.validation is not None and len(ds.validation) else ds.train
    prune.prune(model, take(rows.inputs, torch.arange(2) % len(rows)), opts.amount)
    cfg = prune.widths(parent.config, model)
    child = _tuned(cfg, prune.as_family_model(cfg, parent.schema, model), ds, opts.epochs,
                   lr_scale=opts.lr_scale)
    _save(tmp, parent, cfg, child, {})
    return {"amount": opts.amount, "epochs": opts.epochs, "lr_scale": opts.lr_scale,
            "parameters": {
        "parent": sum(p.numel() for p in parent.model.parameters()),
        "child": sum(p.numel() for p in child.parameters())}}


def _distilled(parent: Predictor, tmp: Path, ds: Dataset, opts: Options) -> dict[str, Any]:
    cfg = parse(opts.student) if opts.student else distill.student_config(parent.config,
                                                                         opts.width)
    if not isinstance(cfg, Config):
        raise ConfigError("--student must be a supervised model config")
    resolve_columns(cfg)  # the child's config names its columns, as a trained run's does
    torch.manual_seed(cfg.seed)
    student = build_model(cfg.model, cfg.outputs, parent.schema.describe())
    child = _tuned(cfg, student, ds, opts.epochs, distill.DistillTrainer,
                   teacher=parent.model, temperature=opts.temperature, alpha=opts.alpha)
    _save(tmp, parent, cfg, child, {})
    return {"width": None if opts.student else opts.width, "student": opts.student,
            "temperature": opts.temperature, "alpha": opts.alpha, "epochs": opts.epochs,
            "parameters": {"teacher": sum(p.numel() for p in parent.model.parameters()),
                           "student": sum(p.numel() for p in child.parameters())}}
