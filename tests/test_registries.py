"""One contract over every registry (in the spirit of scikit-learn's test_common.py): each
name the config accepts has a registered class, each registered class keeps the contract of
its kind, and every package's ``__all__`` resolves.

The names are read from the pydantic config (the ``type`` / ``family`` literals of its
unions), never listed by hand, so a new config type without an encoder or model fails here.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any, get_args

import pytest
from pydantic import BaseModel
from torch import nn

from layerwise.config import Config
from layerwise.data.catalogue import CATALOGUE
from layerwise.data.encoder import Encoder
from layerwise.data.features import (
    INPUT_ENCODERS,
    OUTPUT_ENCODERS,
    NumericEncoder,
    _by_kind,
    make_encoder,
)
from layerwise.errors import ConfigError, DataError
from layerwise.inference.predictor import DECODERS
from layerwise.models.registry import BUILTIN_FAMILIES, get_model, model_names

SRC = Path(__file__).parent.parent / "src" / "layerwise"


def tags(annotation: Any, key: str) -> set[str]:
    """The values of the ``Literal`` field ``key`` of every pydantic model in a (nested)
    annotation: ``list[Annotated[Union[A, B], ...]]`` → A's and B's tags."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return set(get_args(annotation.model_fields[key].annotation))
    return set().union(*(tags(a, key) for a in get_args(annotation)))


INPUT_TYPES = tags(Config.model_fields["inputs"].annotation, "type")
OUTPUT_TYPES = tags(Config.model_fields["outputs"].annotation, "type")
FAMILIES = tags(Config.model_fields["model"].annotation, "family")
# output types predicted whole by a path of their own in Predictor.predict, not row by row
TASK_OUTPUTS = {"forecast": "inference/sequences.forecast", "tags": "inference/sequences.tag",
                "sequence": "inference/seq2seq.predict"}


def test_the_config_unions_were_read() -> None:
    assert {"numeric", "category", "text"} <= INPUT_TYPES
    assert {"numeric", "category", "next_token"} <= OUTPUT_TYPES
    assert {"mlp", "transformer"} <= FAMILIES


# ----------------------------------------------------------------------------- encoders


@pytest.mark.parametrize(("output", "accepted", "registry"),
                         [(False, INPUT_TYPES, INPUT_ENCODERS),
                          (True, OUTPUT_TYPES, OUTPUT_ENCODERS)], ids=["inputs", "outputs"])
def test_every_feature_type_has_an_encoder(output: bool, accepted: set[str],
                                           registry: Any) -> None:
    assert accepted - set(registry) == set(), "config types without an encoder"
    assert set(registry) - accepted == set(), "encoders of types the config does not accept"


ENCODERS = sorted({(kind, cls) for table in (INPUT_ENCODERS, OUTPUT_ENCODERS)
                   for kind, cls in table.items()}, key=lambda kc: kc[0])


@pytest.mark.parametrize(("kind", "cls"), ENCODERS, ids=[k for k, _ in ENCODERS])
def test_encoder_contract(kind: str, cls: type[Encoder]) -> None:
    assert issubclass(cls, Encoder) and cls.kind == kind
    for method in ("parse", "fit", "transform", "state", "load_state"):
        assert getattr(cls, method) is not getattr(Encoder, method), f"{kind}: no {method}"


def test_every_output_type_is_decoded() -> None:
    assert set(DECODERS) | set(TASK_OUTPUTS) == OUTPUT_TYPES
    assert not set(DECODERS) & set(TASK_OUTPUTS)


def test_encoder_registry_rejects_duplicates_and_lists_names_on_a_miss() -> None:
    with pytest.raises(ConfigError, match="'numeric' is already registered"):
        _by_kind(NumericEncoder, NumericEncoder)
    with pytest.raises(DataError, match="no input encoder for type 'video'; registered: "
                                        "audio, binary, category, image, numeric, "):
        make_encoder(SimpleNamespace(name="x", type="video"), output=False)
    with pytest.raises(TypeError):
        INPUT_ENCODERS["video"] = NumericEncoder  # type: ignore[index]  # read-only


# ----------------------------------------------------------------------------- models


def test_every_family_has_a_model() -> None:
    assert FAMILIES - set(model_names()) == set(), "config families without a model"
    assert set(BUILTIN_FAMILIES) - FAMILIES == set(), "models of families the config lacks"


@pytest.mark.parametrize("family", sorted(BUILTIN_FAMILIES))
def test_model_contract(family: str) -> None:
    cls = get_model(family)
    assert issubclass(cls, nn.Module) and callable(cls.from_config)  # type: ignore[attr-defined]
    assert cls.family == family  # type: ignore[attr-defined]
    assert f"{cls.__module__}:{cls.__qualname__}" == BUILTIN_FAMILIES[family]


def test_catalogue_entries_are_keyed_by_name() -> None:
    assert all(name == e.name and callable(e.loader) for name, e in CATALOGUE.items())


# ----------------------------------------------------------------------------- __all__


def _declares_all(init: Path) -> bool:
    return any(isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "__all__"
                                                 for t in n.targets)
               for n in ast.parse(init.read_text(encoding="utf-8")).body)


PACKAGES = sorted(".".join(("layerwise", *p.parent.relative_to(SRC).parts))
                  for p in SRC.rglob("__init__.py") if _declares_all(p))


def test_the_packages_were_found() -> None:
    assert {"layerwise", "layerwise.config", "layerwise.models"} <= set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_every_name_in_all_resolves(package: str) -> None:
    module = importlib.import_module(package)
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing, f"{package}.__all__ names what it does not hold: {missing}"
    assert len(set(module.__all__)) == len(module.__all__), f"{package}: duplicates"
