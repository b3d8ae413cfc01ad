"""The strict base of every config model, and the base of every model family's config:
what a family accepts, declared once beside its fields (see docs/decisions.md)."""

from __future__ import annotations

import typing
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class CardConfig(_Strict):
    """What the model card says that the data cannot: who made the model, what it is for,
    what it must not be used for. Every field is optional; the card fills in the rest (model,
    data, hyperparameters, evaluation, lineage) from the run. The card is documentation:
    it is left out of the config hash and of the resume comparison."""

    description: str | None = Field(None, description="what the model does, in a sentence "
                                    "or two")
    owners: list[str] = Field(default_factory=list, description="people or teams to ask")
    license: str | None = Field(None, description="the licence of the model (and its data)")
    intended_use: str | None = Field(None, description="the task and users it was made for")
    out_of_scope: str | None = Field(None, description="uses it was not made or checked for")
    limitations: str | None = Field(None, description="known weaknesses: data it has not "
                                    "seen, groups it does worse on, failure modes")
    ethical_considerations: str | None = Field(None, description="risks and their "
                                               "mitigations")

    def fields(self) -> list[tuple[str, str]]:
        """(title, text) of the fields that are set, in the card's order."""
        titles = {"description": "Description", "owners": "Owners", "license": "Licence",
                  "intended_use": "Intended use", "out_of_scope": "Out of scope",
                  "limitations": "Limitations",
                  "ethical_considerations": "Ethical considerations"}
        values = self.model_dump()
        values["owners"] = ", ".join(self.owners) or None
        return [(t, str(values[k])) for k, t in titles.items() if values[k]]


class _Family(_Strict):
    """A model family's config. Besides its fields, each family declares what it accepts;
    the config's validators, ``models.build_model`` and ``api.family_defaults`` read these
    declarations instead of naming families::

        >>> from layerwise.config import RNNConfig
        >>> "timeseries" in RNNConfig.input_kinds, RNNConfig.generative
        (True, False)
        >>> RNNConfig.train_defaults["grad_clip"][0]
        1.0
    """

    input_kinds: ClassVar[tuple[str, ...]] = ()
    """The input ``type``s the family reads."""
    output_kinds: ClassVar[tuple[str, ...]] = ()
    """The output ``type``s it predicts; none for a generative family."""
    generative: ClassVar[bool] = False
    """It learns from its inputs alone: a whole model, no output heads, no ``outputs``."""
    train_defaults: ClassVar[Mapping[str, tuple[Any, str]]] = {}
    """``train`` fields it sets when the config leaves them unset: field → (value, reason);
    the reason is recorded in ``metrics.json → defaults``."""

    init_from: str | None = Field(None, description="start from a pre-trained encoder "
                                  "artifact (`layerwise pretrain`'s model folder, or "
                                  "models:/NAME@alias): every tensor whose name and shape "
                                  "match is copied, and its fitted input encoders (the text "
                                  "tokenizer) are reused")
    init_lr: float = Field(1.0, gt=0.0, le=1.0, description="with init_from: the copied "
                           "tensors train at train.optimizer.lr × init_lr, the new layers "
                           "(the heads) at lr (1: one rate; 0.1 keeps more of what "
                           "pre-training learned); no effect without init_from, so a "
                           "from-scratch comparison only sets init_from: null")
    init_frozen_epochs: int = Field(0, ge=0, description="with init_from: the copied "
                                    "tensors stay fixed for the first N epochs while the "
                                    "new layers fit (a linear probe), then train (at "
                                    "init_lr)")

    @field_validator("*")
    @classmethod
    def _widths(cls, value: Any, info: ValidationInfo) -> Any:
        # a family's lists of integers are layer widths (hidden, dense, channels): a width
        # of 0 would build a layer with no units, which trains but cannot learn
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and field.annotation == list[int] and any(v < 1 for v in value):
            raise ValueError("every width must be at least 1")
        return value

    def accepts_output(self, kind: str) -> bool:
        """Whether this configuration of the family predicts ``kind`` outputs: the declared
        ``output_kinds``, narrowed by a family whose settings rule one out."""
        return kind in self.output_kinds


def union_members(annotation: Any) -> list[type[BaseModel]]:
    """The config models of a union annotation (``Annotated`` and ``Optional`` unwrapped)."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    origin = typing.get_origin(annotation)
    if origin is Union or str(origin) == "<class 'types.UnionType'>":
        return [a for a in typing.get_args(annotation)
                if isinstance(a, type) and issubclass(a, BaseModel)]
    return [annotation] if isinstance(annotation, type) and issubclass(annotation,
                                                                       BaseModel) else []


def tags(model: type[BaseModel], discriminator: str) -> tuple[str, ...]:
    """The tags a union member answers to: the values of its ``Literal`` discriminator."""
    field = model.model_fields.get(discriminator)
    return typing.get_args(field.annotation) if field is not None else ()


def family_configs(union: Any) -> dict[str, type[_Family]]:
    """Every family config of a union of families, by its tag (its ``family`` value)."""
    return {tag: m for m in union_members(union) if issubclass(m, _Family)
            for tag in tags(m, "family")}


def families_for(families: Mapping[str, type[_Family]], input_kinds: Iterable[str] = (),
                 output_kinds: Iterable[str] = ()) -> list[str]:
    """The families that read every one of ``input_kinds`` and predict every one of
    ``output_kinds`` (generative ones where there are no outputs): the alternatives an
    error suggests."""
    ins, outs = set(input_kinds), set(output_kinds)
    return sorted(tag for tag, c in families.items() if ins <= set(c.input_kinds)
                  and outs <= set(c.output_kinds) and c.generative == (not outs))


def either(names: list[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    return " or ".join(filter(None, [", ".join(names[:-1]), *names[-1:]]))


def check_heads(d_model: int, heads: int, positions: str) -> None:
    """Attention widths: ``d_model`` splits evenly into heads, and rotary positions need an
    even head width (shared by the transformer families)."""
    if d_model % heads:
        raise ValueError(f"d_model must be a multiple of heads; got d_model={d_model}, "
                         f"heads={heads}")
    if positions == "rotary" and (d_model // heads) % 2:
        raise ValueError("rotary positions need an even head width (d_model / heads); got "
                         f"{d_model // heads}")
