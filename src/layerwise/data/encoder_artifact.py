"""The encoder artifact of ``layerwise pretrain``, as the data stage reads it.

A run with ``model.init_from`` starts from a pre-trained encoder; its token ids must mean
what they meant in pre-training, so every input encoder whose name and type match one in
the artifact takes the artifact's fitted state (the tokenizer's vocabulary, an image
input's size and normalisation) instead of being fitted on the run's own training split.
The weights are copied later, by :mod:`layerwise.pretrain.warm_start`.

    model/
      layerwise.json      {"kind": "encoder", "objective", "family", "config", "schema", ...}
      model.safetensors   the backbone's weights (``backbone.*``); the pre-training head
                          is dropped
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from layerwise.errors import ConfigError

KIND = "encoder"
META = "layerwise.json"
WEIGHTS = "model.safetensors"


def resolve(ref: str) -> Path:
    """The folder ``model.init_from`` names: a path, or a ``models:/NAME@alias`` URI that
    the registry resolves (its files checked against the registered digest)."""
    if ref.startswith("models:"):
        from layerwise.tracking.registry import resolve_model

        return resolve_model(ref)
    return Path(ref).expanduser()


def read(ref: str) -> tuple[Path, dict[str, Any]]:
    """(folder, metadata) of the artifact ``model.init_from`` names, checked: a model
    folder with JSON metadata and a safetensors weights file."""
    path = resolve(ref)
    meta_path = path / META
    if not meta_path.is_file() or not (path / WEIGHTS).is_file():
        raise ConfigError(f"model.init_from: {path} is not a model folder (it needs {META} "
                          f"and {WEIGHTS}); point it at a run's model/ folder")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as e:
        raise ConfigError(f"model.init_from: {meta_path} is not valid JSON ({e})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("schema"), dict):
        raise ConfigError(f"model.init_from: {meta_path} holds no fitted feature schema")
    return path, meta


def adopt_encoders(schema: Any, ref: str, feature_configs: dict[str, Any]) -> list[str]:
    """Load the artifact's fitted state into every input encoder of ``schema`` with the same
    name and type; returns their names. A text input whose tokenizer settings differ from
    the pre-trained one's is a ConfigError: its ids would mean other tokens."""
    path, meta = read(ref)
    saved = {s.get("name"): s for s in meta["schema"].get("inputs", []) if isinstance(s, dict)}
    before = {f.get("name"): f for f in meta.get("config", {}).get("inputs", [])}
    adopted = []
    for enc in schema.inputs:
        s = saved.get(enc.name)
        if s is None or s.get("type") != enc.kind:
            continue
        if enc.kind == "text":
            _same_tokenizer(enc.name, before.get(enc.name, {}), feature_configs[enc.name],
                            path)
        enc.load_state(s["state"])
        adopted.append(enc.name)
    return adopted


def _same_tokenizer(name: str, old: dict[str, Any], new: Any, path: Path) -> None:
    for key in ("tokenizer", "lowercase"):
        if key in old and old[key] != getattr(new, key):
            raise ConfigError(f"inputs.{name}.{key}: the pre-trained encoder in {path} used "
                              f"{old[key]!r}; this config says {getattr(new, key)!r} (token "
                              "ids would not agree; use the pre-training's setting)")
