"""The model registry: a family name → a module class with ``from_config``.

    >>> from layerwise.models.registry import get_model
    >>> get_model("mlp").__name__
    'MLP'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from torch import nn

from layerwise.errors import ConfigError, UnknownNameError

T = TypeVar("T", bound=type[nn.Module])
_MODELS: dict[str, type[nn.Module]] = {}


def register_model(name: str) -> Callable[[T], T]:
    """Class decorator: register a model family under ``name`` (duplicates are errors)."""

    def deco(cls: T) -> T:
        if name in _MODELS:
            raise ConfigError(f"model family {name!r} is already registered "
                              f"(by {_MODELS[name].__module__}.{_MODELS[name].__qualname__})")
        if not hasattr(cls, "from_config"):
            raise ConfigError(f"{cls.__qualname__} needs a from_config(cfg, schema) classmethod")
        cls.family = name  # type: ignore[attr-defined]
        _MODELS[name] = cls
        return cls

    return deco


def get_model(name: str) -> type[nn.Module]:
    """The class registered under ``name``; a miss lists the valid names."""
    _load_builtins()
    if name not in _MODELS:
        raise UnknownNameError(f"unknown model family {name!r}; registered: "
                               f"{', '.join(sorted(_MODELS))}")
    return _MODELS[name]


def model_names() -> list[str]:
    _load_builtins()
    return sorted(_MODELS)


def _load_builtins() -> None:
    # importing the family modules registers them
    from layerwise.models import (  # noqa: F401
        autoencoder,
        cnn,
        diffusion,
        gan,
        mlp,
        rnn,
        seq2seq,
        transformer,
        vae,
    )
