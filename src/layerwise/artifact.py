"""The model directory: JSON metadata + safetensors weights, never a pickle.

    model/
      layerwise.json      format version, config, fitted feature schema, metrics, lineage
      model.safetensors   weights only
      reference.json      training-data statistics (for drift monitoring)
      card.md             the model card

Loading checks the format version, that the weights file really is safetensors (a pickle
or torch zip is refused before anything reads it, with :class:`UnsafeArtifactError`; a
damaged or foreign file is an :class:`ArtifactError`), and that every family and feature
type named in the metadata is registered.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from layerwise.config import Config, parse
from layerwise.data.build import Schema
from layerwise.data.features import INPUT_ENCODERS, OUTPUT_ENCODERS
from layerwise.errors import ArtifactError, ConfigError, UnsafeArtifactError
from layerwise.models import LayerwiseModel, build_model, model_names
from layerwise.training.checkpoint import atomic_write

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
    from safetensors.torch import save as st_save

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
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
    blob = st_save(tensors, metadata={"format": "pt", "library": "layerwise"})
    atomic_write(out / WEIGHTS, lambda f: f.write(blob))
    _write_text(out / META, json.dumps(meta, indent=2, default=_json_default))
    if reference is not None:
        _write_text(out / REFERENCE, json.dumps(reference, indent=2, default=_json_default))
    if card is not None:
        _write_text(out / CARD, card)
    return out


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


def check_weights_file(path: Path) -> None:
    """Refuse anything that is not a well-formed safetensors file, without unpickling.

    A safetensors file starts with its header length as 8 little-endian bytes, and those
    can begin with 0x80 (a pickle's first byte) or "PK" (a zip's): 1 in 32 lengths has the
    low byte 0x80. So the header is checked first, and only a file that is not safetensors
    is named a pickle or a zip (:class:`UnsafeArtifactError`) or damaged
    (:class:`ArtifactError`).
    """
    if not path.is_file():
        raise ArtifactError(f"{path.parent}: no {WEIGHTS} (is this a layerwise model "
                            "directory?)")
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ArtifactError(f"{path}: truncated weights file ({len(head)} bytes)")
        (n,) = struct.unpack("<Q", head)
        fits = 0 < n <= min(size - 8, 100 * 2**20)
        header = f.read(n) if fits else b""
    try:
        parsed = json.loads(header) if fits else None
    except (ValueError, RecursionError):  # RecursionError: "[[[[...", nested too deep
        parsed = None
    if isinstance(parsed, dict):
        return
    if head[:1] == b"\x80" or head[:2] == b"PK":
        kind = "a Python pickle" if head[:1] == b"\x80" else "a zip (torch.save) archive"
        raise UnsafeArtifactError(f"{path}: is {kind}, not safetensors; pickled weights "
                                  "can run code when loaded and are refused")
    if not fits:
        raise ArtifactError(f"{path}: truncated or not a safetensors file (header length "
                            f"{n} does not fit a {size}-byte file)")
    raise ArtifactError(f"{path}: not a safetensors file (the header is not a JSON object)")


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
    desc = schema.describe()
    return build_model(config.model, config.outputs, desc)


def load(path: str | Path) -> Artifact:
    """Load a model directory safely; see the module docstring for the checks."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

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
    try:
        tensors = load_file(str(p / WEIGHTS))
    except (SafetensorError, OSError) as e:
        raise ArtifactError(f"{p / WEIGHTS}: cannot read weights ({e})") from None
    missing = set(model.state_dict()) - set(tensors)
    unexpected = set(tensors) - set(model.state_dict())
    if missing or unexpected:
        raise ArtifactError(f"{p / WEIGHTS}: weights do not match the model (missing "
                            f"{sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})")
    try:
        model.load_state_dict(tensors)
    except RuntimeError as e:
        raise ArtifactError(f"{p / WEIGHTS}: weights do not fit the model: {e}") from None
    model.eval()
    return Artifact(p, config, schema, model, meta)
