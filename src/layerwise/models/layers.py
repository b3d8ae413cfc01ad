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
        windows = {**windows, **desc.get("rows", {})}  # a series row: a window [B, L, 1]
        windows |= desc.get("audio", {})  # an audio input: its spectrogram's frames
        if not texts and not windows:
            raise ConfigError(f"model {family} needs at least one text, timeseries, series "
                              "or audio input")
        self.text_names = sorted(texts)
        self.encoders = nn.ModuleDict({n: ChunkPool.around(text(texts[n]), texts[n])
                                       for n in self.text_names})
        self.series_names = sorted(windows)
        self.windows = nn.ModuleDict({n: series(windows[n]) for n in self.series_names})
        # a tags output tags every token of one text input. Alone, the backbone returns that
        # text's per-token states (no pooling); beside other outputs (``joint``) it returns
        # the pooled encoding of every input for their heads and the states for the tags head
        kinds = [k for k, _ in desc.get("outputs", {}).values()]
        self.per_token = bool(kinds) and set(kinds) == {"tags"}
        if "tags" in kinds and any(isinstance(e, ChunkPool) for e in self.encoders.values()):
            raise ConfigError("a tags output tags every token of its text; truncate: chunks "
                              "is for classifying long texts")
        self.joint = "tags" in kinds and not self.per_token
        self.tagged = (desc.get("tagged") or self.text_names[:1] or [None])[0]
        self.token_features = self.encoders[self.tagged].out_features \
            if self.tagged in self.encoders else 0
        self.tabular = TabularEncoder.from_schema(desc)
        width = sum(e.out_features for e in self.encoders.values()) + self.tabular.out_features
        return width + sum(e.out_features for e in self.windows.values())

    def features(self, inputs: dict[str, Any]) -> torch.Tensor:
        """Every input's encoding, concatenated: ``[B, F_in]``."""
        return self._features(inputs, None)[0]

    def joint_features(self, inputs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`features` and the tagged text's per-token states ``[B, T, C]``, from one
        run of its encoder (``pooled_and_states``)."""
        pooled, states = self._features(inputs, self.tagged)
        if states is None:
            raise ConfigError(f"the tagged text input {self.tagged!r} is not an input")
        return pooled, states

    def _features(self, inputs: dict[str, Any], tagged: str | None
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
        parts, states = [], None
        for n in self.text_names:
            if n == tagged:
                pooled, states = self.encoders[n].pooled_and_states(inputs[n])
                parts.append(pooled)
            else:
                parts.append(self.encoders[n](inputs[n]))
        parts += [self.windows[n](inputs[n]) for n in self.series_names]
        tab = self.tabular(inputs)
        if tab is not None:
            parts.append(tab)
        return cat_features(parts), states


class ChunkPool(nn.Module):
    """Chunk-and-pool over a long text (``truncate: chunks``, data/text.py): the windows
    ``ids [B, C, T]`` of every row go through one text encoder as rows of their own (empty
    windows skipped), and the encodings of a row's windows are pooled (mean | max) into
    ``[B, F]``: the whole document is read, at the cost of C short passes."""

    def __init__(self, encoder: nn.Module, pool: str) -> None:
        super().__init__()
        self.encoder, self.pool = encoder, pool
        self.out_features = encoder.out_features

    @classmethod
    def around(cls, encoder: nn.Module, spec: dict[str, Any]) -> nn.Module:
        """``encoder`` wrapped when its text input is chunked, else itself."""
        return cls(encoder, spec.get("chunk_pool", "mean")) if spec.get("chunks") else encoder

    def forward(self, text: dict[str, torch.Tensor]) -> torch.Tensor:
        ids, lengths = text["ids"], text["lengths"]                     # [B, C, T], [B, C]
        b, c, t = ids.shape
        flat_len = lengths.reshape(b * c)
        keep = flat_len > 0                                              # real windows
        enc = self.encoder({"ids": ids.reshape(b * c, t)[keep], "lengths": flat_len[keep]})
        out = enc.new_zeros(b * c, enc.shape[-1])
        out[keep] = enc
        return masked_pool(out.view(b, c, -1), lengths > 0, self.pool)   # [B, F]
