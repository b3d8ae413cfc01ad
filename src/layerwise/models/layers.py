"""Small building blocks shared by families: activations and the tabular input encoder."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from layerwise.errors import UnknownNameError

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
    "silu": nn.SiLU, "leaky_relu": nn.LeakyReLU,
}


def activation(name: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise UnknownNameError(f"unknown activation {name!r}; valid: "
                               f"{', '.join(sorted(_ACTIVATIONS))}")
    return _ACTIVATIONS[name]()


class TabularEncoder(nn.Module):
    """Numeric block ``[B, k]`` + one embedding per category column → ``[B, k + Σ dims]``."""

    def __init__(self, numeric_dim: int, category_sizes: list[int],
                 category_dims: list[int | None]) -> None:
        super().__init__()
        self.numeric_dim = numeric_dim
        dims = [d or min(32, (n + 1) // 2) for n, d in zip(category_sizes, category_dims)]
        self.embeddings = nn.ModuleList(nn.Embedding(n, d) for n, d in
                                        zip(category_sizes, dims))
        self.out_features = numeric_dim + sum(dims)

    @classmethod
    def from_schema(cls, desc: dict[str, Any]) -> TabularEncoder:
        return cls(desc["numeric_dim"], desc["category_sizes"], desc["category_dims"])

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor | None:
        parts = []
        if self.numeric_dim:
            parts.append(inputs["numeric"])
        if len(self.embeddings):
            cat = inputs["category"]  # [B, m] long
            parts.extend(emb(cat[:, j]) for j, emb in enumerate(self.embeddings))
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
