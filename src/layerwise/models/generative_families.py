"""Imports the generative family modules so that they register themselves.

Each family lives in its own file (autoencoder.py, vae.py, gan.py, diffusion.py); a module
that is not there yet is skipped, so the registry lists exactly the families that exist.
"""

from __future__ import annotations

import importlib

for _name in ("autoencoder", "vae", "gan", "diffusion"):
    try:
        importlib.import_module(f"layerwise.models.{_name}")
    except ModuleNotFoundError as e:  # pragma: no cover - only while a family is missing
        if e.name != f"layerwise.models.{_name}":
            raise
