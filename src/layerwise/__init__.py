"""layerwise: describe a neural network in a few lines, train it fast and exactly.

    >>> import layerwise as lw
    >>> run = lw.train("examples/digits_cnn.yaml", output="runs/digits")   # doctest: +SKIP
    >>> lw.load(run.model_dir).predict(images)                              # doctest: +SKIP

Heavy modules (torch, pandas, scikit-learn) load on first use, so ``import layerwise``
stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

__all__ = [
    "Callback",
    "Config",
    "Predictor",
    "Run",
    "TrainConfig",
    "Trainer",
    "__version__",
    "errors",
    "evaluate",
    "load",
    "parse_config",
    "register_model",
    "train",
]

_LAZY = {
    "Callback": ("layerwise.training.callbacks", "Callback"),
    "Config": ("layerwise.config", "Config"),
    "Predictor": ("layerwise.inference.predictor", "Predictor"),
    "Run": ("layerwise.api", "Run"),
    "TrainConfig": ("layerwise.config", "TrainConfig"),
    "Trainer": ("layerwise.training.trainer", "Trainer"),
    "errors": ("layerwise.errors", None),
    "evaluate": ("layerwise.api", "evaluate"),
    "load": ("layerwise.api", "load"),
    "parse_config": ("layerwise.config", "parse"),
    "register_model": ("layerwise.models.registry", "register_model"),
    "train": ("layerwise.api", "train"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        mod = importlib.import_module(module)
        value = mod if attr is None else getattr(mod, attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'layerwise' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
