"""Atomic checkpoints (written through :func:`layerwise.files.atomic_write`).

A checkpoint is a dict of tensors and plain values written with ``torch.save`` and read
back only with ``weights_only=True`` (no arbitrary unpickling).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from layerwise.errors import CheckpointError
from layerwise.files import atomic_write

CHECKPOINT = "last.ckpt"


def save(path: Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda f: torch.save(state, f))


def load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"no checkpoint to resume from at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise CheckpointError(f"{path}: cannot read checkpoint ({e}); it was not written by "
                              "layerwise or is damaged") from None


def rng_state() -> dict[str, Any]:
    """All global RNG states, in types that ``weights_only`` loading accepts."""
    np_state = np.random.get_state()
    py = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "python": {"version": py[0], "state": list(py[1]), "gauss": py[2]},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


def is_finite(module: torch.nn.Module) -> bool:
    """Whether every weight is finite. Buffers are not checked: some are NaN on purpose
    (an autoencoder's anomaly threshold before it is chosen)."""
    return all(bool(torch.isfinite(p).all()) for p in module.parameters()
               if p.is_floating_point())


# the train settings a resume may change: how long the run goes on (epochs, or
# total_steps for an agent), how it reports, and how many threads it uses
MAY_CHANGE = ("epochs", "total_steps", "progress", "threads")


def seed_all(seed: int) -> None:
    """Seed torch and NumPy's global generators: the one seeding of every kind of run."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def say_fresh_start(path: Path) -> None:
    """Tell the user a resume found no checkpoint yet and starts from the beginning."""
    import sys

    print(f"resume: no checkpoint at {path} yet (the run stopped before its first one): "
          "starting from the beginning", file=sys.stderr, flush=True)
