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


def dense_stack(width: int, sizes: list[int], act: str, dropout: float) -> tuple[nn.Module, int]:
    """``Linear → act → dropout`` per size; returns the stack and its output width."""
    layers: list[nn.Module] = []
    for d in sizes:
        layers += [nn.Linear(width, d), activation(act)]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = d
    return nn.Sequential(*layers), width


def trim(text: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A text batch cut to its longest row: ids ``[B, T']``, lengths ``[B]``, mask ``[B, T']``.

    Rows are padded to ``max_length`` once, at encoding; cutting here makes the padding free.
    """
    lengths = text["lengths"]
    t = int(lengths.max()) if lengths.numel() else 1
    ids = text["ids"][:, :t]
    mask = torch.arange(t, device=ids.device)[None, :] < lengths[:, None]  # True = a token
    return ids, lengths, mask


def masked_pool(h: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Pool states ``[B, T, D]`` over the valid steps of ``mask [B, T]`` → ``[B, D]``."""
    m = mask.unsqueeze(-1).to(h.dtype)
    if mode == "mean":
        return (h * m).sum(1) / m.sum(1).clamp(min=1.0)
    if mode == "max":
        return h.masked_fill(~mask.unsqueeze(-1), torch.finfo(h.dtype).min).amax(1)
    raise UnknownNameError(f"unknown pooling {mode!r}; valid: mean, max")


class AttentionPool(nn.Module):
    """Additive attention over time: ``softmax_t(v · tanh(W h_t))``-weighted sum of states."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        self.score = nn.Linear(dim, 1, bias=False)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        s = self.score(torch.tanh(self.proj(h))).squeeze(-1)        # [B, T]
        w = s.masked_fill(~mask, float("-inf")).softmax(dim=1)      # [B, T]
        return torch.einsum("bt,btd->bd", w, h)                     # [B, D]
