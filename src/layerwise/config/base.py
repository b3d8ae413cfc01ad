"""The strict base of every config model: unknown keys are errors, assignments validated."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def check_heads(d_model: int, heads: int, positions: str) -> None:
    """Attention widths: ``d_model`` splits evenly into heads, and rotary positions need an
    even head width (shared by the transformer families)."""
    if d_model % heads:
        raise ValueError(f"d_model must be a multiple of heads; got d_model={d_model}, "
                         f"heads={heads}")
    if positions == "rotary" and (d_model // heads) % 2:
        raise ValueError("rotary positions need an even head width (d_model / heads); got "
                         f"{d_model // heads}")

