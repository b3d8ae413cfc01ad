"""The model directory: JSON metadata + safetensors weights, never a pickle.

    model/
      layerwise.json      format version, config, fitted feature schema, metrics, lineage
      model.safetensors   weights only
      reference.json      training-data statistics (for drift monitoring)
      card.md             the model card

Loading checks the format version, that the weights file really is safetensors (a pickle
or torch zip is refused before anything reads it, with :class:`UnsafeArtifactError`; a
damaged or foreign file is an :class:`ArtifactError`), that every family and feature
type named in the metadata is registered, and that the weights fit the model and are finite
(NaN or infinity in a weight is damage: an :class:`ArtifactError` names the tensor).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from layerwise.config import Config, parse
from layerwise.data.build import Schema
from layerwise.data.features import INPUT_ENCODERS, OUTPUT_ENCODERS
from layerwise.errors import ArtifactError, ConfigError
from layerwise.files import (
    check_finite,
    check_safetensors,
    dumps_json,
    load_safetensors,
    save_safetensors,
    write_text,
)
from layerwise.models import LayerwiseModel, build_model, model_names

FORMAT_VERSION = 1
META = "layerwise.json"
WEIGHTS = "model.safetensors"
REFERENCE = "reference.json"
CARD = "card.md"


@dataclass
class Artifact:
    """A loaded model directory."""

    path: Path
    config: Config
    schema: Schema
    model: LayerwiseModel
    meta: dict[str, Any]


def save(path: str | Path, *, config: Config, schema: Schema, model: torch.nn.Module,
         metrics: dict[str, Any] | None = None, lineage: dict[str, Any] | None = None,
         reference: dict[str, Any] | None = None, card: str | None = None,
         extra: dict[str, Any] | None = None) -> Path:
    """Write a model directory; each file is replaced atomically."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "format_version": FORMAT_VERSION,
        "library": "layerwise",
        "family": config.model.family,
        "task": {o.name: o.type for o in config.outputs},
        "config": config.model_dump(mode="json"),
        "schema": schema.state(),
        "metrics": metrics or {},
        "lineage": lineage or {},
        **(extra or {}),
    }
    save_safetensors(out / WEIGHTS, model.state_dict())
    _write_text(out / META, dumps_json(meta, indent=2))
    if reference is not None:
        _write_text(out / REFERENCE, dumps_json(reference, indent=2))
    if card is not None:
        _write_text(out / CARD, card)
    return out


_write_text = write_text


def update_meta(path: str | Path, updates: dict[str, Any]) -> dict[str, Any]:
    """Merge ``updates`` into the top level of a model directory's ``layerwise.json``,
    replaced atomically; the weights and every other file stay untouched (e.g. the
    temperature and conformal fits of ``layerwise calibrate``). Returns the new metadata."""
    meta = read_header(path)
    meta.update(updates)
    _write_text(Path(path) / META, dumps_json(meta, indent=2))
    return meta


INT8_SCALE = ".int8_scale"  # suffix of the per-row scale of a weight stored in int8


def dequantize(tensors: dict[str, Any]) -> dict[str, Any]:
    """Weights a compressed artifact stores in int8 (``compress --method int8``: the int8
    values and beside them ``<name>.int8_scale``, one float per output row) back to float32;
    every other tensor as it is (a bf16 one is cast when it is loaded into the model)."""
    out = {}
    for name, t in tensors.items():
        if name.endswith(INT8_SCALE):
            continue
        scale = tensors.get(name + INT8_SCALE)
        if scale is not None:
            if t.dtype != torch.int8 or scale.dim() != 1 or scale.shape[0] != t.shape[0]:
                raise ArtifactError(f"{name}: an int8 weight needs int8 values and one "
                                    f"scale per row; got {t.dtype} {list(t.shape)} and "
                                    f"scales {list(scale.shape)}")
            t = t.float() * scale.float().view(-1, *[1] * (t.dim() - 1))
        out[name] = t
    return out


def check_weights_file(path: Path) -> None:
    """Refuse anything that is not a well-formed safetensors file (see
    :func:`layerwise.files.check_safetensors`)."""
    check_safetensors(path)


def read_header(path: str | Path) -> dict[str, Any]:
    """The metadata of any model directory, after the checks every kind shares.

    Those are: the directory and its JSON exist, the JSON is an object, and its format
    version is one this layerwise reads. ``meta["kind"]`` says what the directory holds:
    absent for a supervised model, ``"policy"`` for a reinforcement-learning policy
    (loaded by :mod:`layerwise.rl.policy`).
    """
    p = Path(path)
    if not p.is_dir():
        raise ArtifactError(f"model directory not found: {p}")
    meta_path = p / META
    if not meta_path.is_file():
        raise ArtifactError(f"{p}: no {META}; not a layerwise model directory")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise ArtifactError(f"{meta_path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise ArtifactError(f"{meta_path}: expected a JSON object")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ArtifactError(f"{meta_path}: format_version must be an integer; got "
                            f"{version!r}")
    if version > FORMAT_VERSION:
        raise ArtifactError(f"{meta_path}: format version {version} is newer than this "
                            f"layerwise reads ({FORMAT_VERSION}); upgrade layerwise")
    return meta


def read_meta(path: str | Path) -> dict[str, Any]:
    """The metadata of a supervised model directory, checked (see the module docstring)."""
    meta = read_header(path)
    meta_path = Path(path) / META
    kind = meta.get("kind", "supervised")
    if kind == "encoder":  # layerwise pretrain: weights to start from, no output heads
        raise ArtifactError(f"{meta_path}: holds a pre-trained encoder (layerwise pretrain), "
                            "not a model that predicts; start a model from it with "
                            f"model.init_from: {Path(path)}")
    if kind != "supervised":
        raise ArtifactError(f"{meta_path}: holds a {kind}, not a supervised model; load it "
                            "with layerwise.load")
    family = meta.get("family")
    if family not in model_names():
        raise ArtifactError(f"{meta_path}: model family {family!r} is not registered "
                            f"(known: {', '.join(model_names())}); refusing to load")
    for key in ("config", "schema"):  # a path string here would be read as a YAML file
        if not isinstance(meta.get(key), dict):
            raise ArtifactError(f"{meta_path}: {key!r} must be a JSON object; got "
                                f"{type(meta.get(key)).__name__}")
    for key, known in (("inputs", INPUT_ENCODERS), ("outputs", OUTPUT_ENCODERS)):
        feats = meta["schema"].get(key)
        if not isinstance(feats, list) or not all(isinstance(f, dict) for f in feats):
            raise ArtifactError(f"{meta_path}: schema.{key} must be a list of objects")
        for feat in feats:
            if feat.get("type") not in known:
                raise ArtifactError(f"{meta_path}: {key[:-1]} {feat.get('name')!r} has "
                                    f"unknown type {feat.get('type')!r}; refusing to load")
    return meta


def rebuild(config: Config, schema: Schema) -> LayerwiseModel:
    """The model skeleton for a fitted schema (weights are loaded separately)."""
    # restoring: a family with pre-trained parts takes every weight from the artifact
    desc = {**schema.describe(), "restoring": True}
    return build_model(config.model, config.outputs, desc)


def load(path: str | Path) -> Artifact:
    """Load a model directory safely; see the module docstring for the checks."""
    p = Path(path)
    meta = read_meta(p)
    check_weights_file(p / WEIGHTS)
    try:
        config = parse(meta["config"])
    except ConfigError as e:
        raise ArtifactError(f"{p / META}: the stored config is invalid: {e}") from None
    schema = Schema.from_config(config)
    try:
        schema.load_state(meta["schema"])
    except (KeyError, TypeError, ValueError) as e:
        raise ArtifactError(f"{p / META}: the stored feature schema is invalid: {e}") from None
    model = rebuild(config, schema)
    tensors = dequantize(load_safetensors(p / WEIGHTS))
    missing = set(model.state_dict()) - set(tensors)
    unexpected = set(tensors) - set(model.state_dict())
    if missing or unexpected:
        raise ArtifactError(f"{p / WEIGHTS}: weights do not match the model (missing "
                            f"{sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})")
    # the parameters only: a buffer may be NaN on purpose (an unset anomaly threshold)
    check_finite(p / WEIGHTS, tensors, (n for n, _ in model.named_parameters(
        remove_duplicate=False)))
    try:
        model.load_state_dict(tensors)
    except RuntimeError as e:
        raise ArtifactError(f"{p / WEIGHTS}: weights do not fit the model: {e}") from None
    model.eval()
    return Artifact(p, config, schema, model, meta)
