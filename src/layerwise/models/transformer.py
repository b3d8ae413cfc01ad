"""Transformer encoder over text inputs: pre-norm blocks of self-attention and a GELU MLP.

    ids [B, T] ──token embedding (+ learned / sinusoidal positions)──▶ x [B, T, C]
      (pooling: cls prepends a learned token: T ← T + 1)
      for each block:  x = x + attention(norm(x))     (rotary positions rotate q and k)
                       x = x + mlp(norm(x))           (C → mlp_ratio·C → C, GELU)
      norm(x) ──pool over real tokens: mean | max | cls──▶ [B, C]
    concat over text inputs (+ tabular features) ──dense layers──▶ [B, F]

Attention runs through ``F.scaled_dot_product_attention`` (fused kernels, padding masked
out). ``attention_maps(inputs)`` runs the same blocks with the weights computed explicitly
and returns them, one ``[B, heads, T, T]`` tensor per block, for visualisation.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from layerwise.config import TransformerConfig
from layerwise.errors import ConfigError
from layerwise.models.layers import TabularEncoder, activation, dense_stack, masked_pool, trim
from layerwise.models.registry import register_model


def sinusoidal(n: int, dim: int) -> torch.Tensor:
    """The fixed positions of "Attention is all you need": ``[n, dim]``."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(n, dim)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return pe


def rotate(x: torch.Tensor) -> torch.Tensor:
    """Rotary positions (RoFormer): rotate pairs of channels of ``[B, H, T, D]`` by angle
    ``position · θ_i``, so that ``q·k`` depends on the relative position only."""
    t, d = x.shape[-2], x.shape[-1]
    inv = 1.0 / (10000 ** (torch.arange(0, d, 2, dtype=torch.float32, device=x.device) / d))
    ang = torch.arange(t, dtype=torch.float32, device=x.device)[:, None] * inv  # [T, D/2]
    cos, sin = ang.cos().repeat(1, 2).to(x.dtype), ang.sin().repeat(1, 2).to(x.dtype)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class SelfAttention(nn.Module):
    def __init__(self, d: int, heads: int, dropout: float, rotary: bool) -> None:
        super().__init__()
        self.heads, self.rotary, self.p = heads, rotary, dropout
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, weights: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, T, C = x.shape  # batch, time, channels
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        if self.rotary:
            q, k = rotate(q), rotate(k)                       # each [B, H, T, D]
        keep = mask[:, None, None, :]                         # [B, 1, 1, T]: attend to tokens
        w = None
        if weights:  # explicit path: the same arithmetic, with the weights kept
            s = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
            w = s.masked_fill(~keep, float("-inf")).softmax(dim=-1)  # [B, H, T, T]
            y = w @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=keep,
                                               dropout_p=self.p if self.training else 0.0)
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.drop(self.proj(y)), w


class Block(nn.Module):
    """Pre-norm: ``x + attn(norm(x))``, then ``x + mlp(norm(x))``."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = SelfAttention(d, cfg.heads, cfg.dropout, cfg.positions == "rotary")
        self.mlp = nn.Sequential(nn.Linear(d, cfg.mlp_ratio * d), activation(cfg.activation),
                                 nn.Linear(cfg.mlp_ratio * d, d), nn.Dropout(cfg.dropout))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, weights: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        a, w = self.attn(self.norm1(x), mask, weights)
        x = x + a
        return x + self.mlp(self.norm2(x)), w


class TextTransformer(nn.Module):
    """One text input → ``[B, d_model]``."""

    def __init__(self, cfg: TransformerConfig, vocab_size: int, max_length: int,
                 pad_id: int) -> None:
        super().__init__()
        d = cfg.d_model
        self.pooling, self.positions = cfg.pooling, cfg.positions
        n_pos = max_length + (cfg.pooling == "cls")
        self.tokens = nn.Embedding(vocab_size, d, padding_idx=pad_id)
        self.cls = nn.Parameter(torch.randn(1, 1, d) * 0.02) if cfg.pooling == "cls" else None
        self.pos = nn.Embedding(n_pos, d) if cfg.positions == "learned" else None
        if cfg.positions == "sinusoidal":
            self.register_buffer("table", sinusoidal(n_pos, d), persistent=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(d)
        self.out_features = d

    def _embed(self, text: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, _, mask = trim(text)                               # [B, T], [B, T]
        x = self.tokens(ids)                                    # [B, T, C]
        if self.cls is not None:
            x = torch.cat([self.cls.expand(len(x), -1, -1), x], dim=1)
            mask = torch.cat([mask.new_ones(len(x), 1), mask], dim=1)
        t = x.shape[1]
        if self.pos is not None:
            x = x + self.pos(torch.arange(t, device=x.device))
        elif self.positions == "sinusoidal":
            x = x + self.table[:t]
        return self.drop(x), mask

    def _pool(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        return x[:, 0] if self.pooling == "cls" else masked_pool(x, mask, self.pooling)

    def forward(self, text: dict[str, torch.Tensor]) -> torch.Tensor:
        x, mask = self._embed(text)
        for block in self.blocks:
            x, _ = block(x, mask)
        return self._pool(x, mask)                              # [B, C]

    def attention_maps(self, text: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        x, mask = self._embed(text)
        maps = []
        for block in self.blocks:
            x, w = block(x, mask, weights=True)
            maps.append(w)
        return maps  # type: ignore[return-value]


@register_model("transformer")
class Transformer(nn.Module):
    """A transformer encoder per text input; tabular inputs join the dense head."""

    reads_text = True

    def __init__(self, cfg: TransformerConfig, desc: dict[str, Any]) -> None:
        super().__init__()
        texts = desc.get("texts", {})
        if not texts:
            raise ConfigError("model transformer needs at least one text input (type: text)")
        self.text_names = sorted(texts)
        self.encoders = nn.ModuleDict({
            n: TextTransformer(cfg, texts[n]["vocab_size"], texts[n]["max_length"],
                               texts[n]["pad_id"]) for n in self.text_names})
        self.tabular = TabularEncoder.from_schema(desc)
        width = sum(e.out_features for e in self.encoders.values()) + self.tabular.out_features
        self.dense, self.out_features = dense_stack(width, cfg.dense, cfg.activation,
                                                    cfg.dropout)
        self.apply(_init)

    @classmethod
    def from_config(cls, cfg: TransformerConfig, desc: dict[str, Any]) -> Transformer:
        return cls(cfg, desc)

    def forward(self, inputs: dict[str, Any]) -> torch.Tensor:
        parts = [self.encoders[n](inputs[n]) for n in self.text_names]
        tab = self.tabular(inputs)
        if tab is not None:
            parts.append(tab)
        x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)  # [B, F_in]
        return self.dense(x)

    @torch.no_grad()
    def attention_maps(self, inputs: dict[str, Any]) -> dict[str, list[torch.Tensor]]:
        """Attention weights per text input and block: ``[B, heads, T, T]`` each (T is the
        batch's longest text, plus one for the cls token)."""
        return {n: self.encoders[n].attention_maps(inputs[n]) for n in self.text_names}


def _init(m: nn.Module) -> None:
    # GPT-2's scheme: small normal weights keep the residual stream well scaled at the start
    if isinstance(m, nn.Linear):
        nn.init.normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Embedding):
        nn.init.normal_(m.weight, std=0.02)
        if m.padding_idx is not None:
            m.weight[m.padding_idx].detach().zero_()
