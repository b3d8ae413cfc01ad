"""Test helper: one model trained from a config, as the in-memory Predictor and as the one
loaded back from its saved artifact (for "loaded predicts like in-memory" tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from layerwise import artifact as art
from layerwise.api import build_for
from layerwise.data.build import build
from layerwise.inference.predictor import Predictor
from layerwise.training import Callback, Trainer


def in_memory_and_loaded(cfg: Any, where: Path, epochs: int = 1) -> tuple[Predictor,
                                                                          Predictor]:
    """Train ``cfg`` for ``epochs``, save it to ``where / "m"``; both predictors."""
    cfg.train.epochs = epochs
    ds = build(cfg)
    model = build_for(cfg, ds)
    Trainer(cfg.train).fit(model, ds.train)
    model.eval()
    art.save(where / "m", config=cfg, schema=ds.schema, model=model)
    in_memory = Predictor(art.Artifact(where / "m", cfg, ds.schema, model, {}))
    return in_memory, Predictor.load(where / "m")


class Crash(Callback):
    """Raise once training reaches optimizer step ``at``, as a crash would."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_end(self, trainer: Any, step: int, loss: Any) -> None:
        if step >= self.at:
            raise RuntimeError("simulated crash")
