"""Small building blocks shared by families: activations, the tabular input encoder, dense
stacks, text pooling, and the input side of the sequence families (:class:`SequenceBackbone`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from layerwise.errors import ConfigError, UnknownNameError

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
        return cat_features(parts)


def cat_features(parts: list[torch.Tensor]) -> torch.Tensor:
    """Feature blocks ``[B, F_i]`` side by side → ``[B, Σ F_i]`` (one block: itself, no copy)."""
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


_NORMS: dict[str, type[nn.Module]] = {"batch": nn.BatchNorm1d, "layer": nn.LayerNorm}


def dense_stack(width: int, sizes: list[int], act: str, dropout: float,
                norm: str = "none") -> tuple[nn.Module, int]:
    """``Linear → norm → act → dropout`` per size (``norm``: none | batch | layer; no
    dropout layer when ``dropout`` is 0); returns the stack and its output width."""
    layers: list[nn.Module] = []
    for d in sizes:
        layers.append(nn.Linear(width, d))
        if norm != "none":
            layers.append(_NORMS[norm](d))
        layers.append(activation(act))
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = d
    return nn.Sequential(*layers), width


def trim(text: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A text batch cut to its longest row: ids ``[B, T']``, lengths ``[B]``, mask ``[B, T']``.

    Rows are padded to ``max_length`` once, at encoding; cutting here makes the padding free.
    """
    lengths = text["lengths"]
    if torch.compiler.is_exporting():  # a graph with a dynamic time axis: the caller trims
        t = text["ids"].shape[1]
    else:
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


class SequenceBackbone(nn.Module):
    """The input side of the sequence families (rnn, transformer): one encoder per text input
    (``encoders``), one per timeseries input (``windows``) and the tabular encoder, whose
    outputs ``features`` puts side by side. The family builds its encoders and the dense
    head; this class only wires the inputs, in a fixed order (texts, series, tabular)."""

    def _build_inputs(self, family: str, desc: dict[str, Any],
                      text: Callable[[dict[str, Any]], nn.Module],
                      series: Callable[[dict[str, Any]], nn.Module]) -> int:
        """Create the input encoders (``text(spec)`` / ``series(spec)`` per input, names
        sorted) and return the width of ``features``."""
        texts, windows = desc.get("texts", {}), desc.get("series", {})
        if not texts and not windows:
            raise ConfigError(f"model {family} needs at least one text or timeseries input")
        self.text_names = sorted(texts)
        self.encoders = nn.ModuleDict({n: text(texts[n]) for n in self.text_names})
        self.series_names = sorted(windows)
        self.windows = nn.ModuleDict({n: series(windows[n]) for n in self.series_names})
        # a tags output tags every token of its (only) text input: no pooling
        self.per_token = any(k == "tags" for k, _ in desc.get("outputs", {}).values())
        self.tabular = TabularEncoder.from_schema(desc)
        width = sum(e.out_features for e in self.encoders.values()) + self.tabular.out_features
        return width + sum(e.out_features for e in self.windows.values())

    def features(self, inputs: dict[str, Any]) -> torch.Tensor:
        """Every input's encoding, concatenated: ``[B, F_in]``."""
        parts = [self.encoders[n](inputs[n]) for n in self.text_names]
        parts += [self.windows[n](inputs[n]) for n in self.series_names]
        tab = self.tabular(inputs)
        if tab is not None:
            parts.append(tab)
        return cat_features(parts)
