"""The model registry: a family name → a module class with ``from_config``.

    >>> from layerwise.models.registry import get_model
    >>> get_model("mlp").__name__
    'MLP'

The built-in families are listed once, in ``BUILTIN_FAMILIES``, by module and class name
(as Hugging Face's auto mappings do): a lookup imports that one family's module, so nothing
is imported for its side effect, ``import layerwise`` stays fast, and the family modules,
which import this one for ``register_model``, are not imported by it at load time.
``register_model`` adds a family of your own; on a built-in class it only confirms the
entry.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TypeVar

from torch import nn

from layerwise.errors import ConfigError, UnknownNameError

T = TypeVar("T", bound=type[nn.Module])

# family name → "module:class"; tests/test_registries.py checks every config family is here
BUILTIN_FAMILIES: dict[str, str] = {
    "autoencoder": "layerwise.models.autoencoder:Autoencoder",
    "bag": "layerwise.models.bag:Bag",
    "cnn": "layerwise.models.cnn:CNN",
    "diffusion": "layerwise.models.diffusion:Diffusion",
    "gan": "layerwise.models.gan:GAN",
    "mlp": "layerwise.models.mlp:MLP",
    "pretrained": "layerwise.models.pretrained:Pretrained",
    "rnn": "layerwise.models.rnn:RNN",
    "seq2seq": "layerwise.models.seq2seq:Seq2Seq",
    "transformer": "layerwise.models.transformer:Transformer",
    "vae": "layerwise.models.vae:VAE",
}
_ADDED: dict[str, type[nn.Module]] = {}  # families registered with register_model


def _path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def register_model(name: str) -> Callable[[T], T]:
    """Class decorator: register a model family under ``name`` (duplicates are errors)."""

    def deco(cls: T) -> T:
        builtin = BUILTIN_FAMILIES.get(name)
        owner = _path(_ADDED[name]) if name in _ADDED else builtin
        if name in _ADDED or builtin not in (None, _path(cls)):
            raise ConfigError(f"model family {name!r} is already registered "
                              f"(by {str(owner).replace(':', '.')})")
        if not hasattr(cls, "from_config"):
            raise ConfigError(f"{cls.__qualname__} needs a from_config(cfg, schema) classmethod")
        cls.family = name  # type: ignore[attr-defined]
        if name not in BUILTIN_FAMILIES:
            _ADDED[name] = cls
        return cls

    return deco


def get_model(name: str) -> type[nn.Module]:
    """The class registered under ``name``; a miss lists the valid names."""
    if name in _ADDED:
        return _ADDED[name]
    if name not in BUILTIN_FAMILIES:
        raise UnknownNameError(f"unknown model family {name!r}; registered: "
                               f"{', '.join(model_names())}")
    module, cls_name = BUILTIN_FAMILIES[name].split(":")
    cls: type[nn.Module] = getattr(importlib.import_module(module), cls_name)
    cls.family = name  # type: ignore[attr-defined]
    return cls


def model_names() -> list[str]:
    return sorted(BUILTIN_FAMILIES.keys() | _ADDED.keys())
