"""The ``pretrain`` section: self-supervised pre-training of a family's encoder.

``layerwise pretrain CONFIG`` reads an ordinary run config (data, inputs, model, train) and
this section; the outputs only decide the stratified split (``data.split.labelled``), the
objective never reads them (see docs/decisions.md, issue 16).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from layerwise.config.base import _Strict


class PretrainConfig(_Strict):
    """What the encoder learns from unlabelled rows, and how."""

    objective: Literal["auto", "masked_tokens", "contrastive"] = Field(
        "auto", description="masked_tokens: hide 15% of a text's tokens and predict them "
        "(for a transformer over text); contrastive: two augmented views of an image agree "
        "(for a cnn over images); auto: as the inputs say")
    mask_rate: float = Field(0.15, gt=0.0, lt=1.0, description="masked_tokens: share of "
                             "the real tokens chosen; of those 80% become <unk> (the mask), "
                             "10% a random token, 10% stay")
    temperature: float = Field(0.5, gt=0.0, description="contrastive: the NT-Xent "
                               "temperature")
    projection_dim: int = Field(64, ge=1, description="contrastive: width of the "
                                "projection head (dropped after pre-training)")
    rows: int | None = Field(None, ge=1, description="pre-train on a seeded sample of this "
                             "many training rows (default: all)")
