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

A timeseries input (windows ``[B, L, k]``) enters through a linear projection of each
step's ``k`` channels to ``d_model`` instead of a token embedding; the rest is the same.
With a ``tags`` output the backbone returns per-token states ``[B, T, C]`` (no pooling).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from layerwise.config import TransformerConfig
from layerwise.errors import ConfigError
from layerwise.models.layers import SequenceBackbone, activation, dense_stack, masked_pool, trim
from layerwise.models.registry import register_model


def sinusoidal(n: int, dim: int) -> torch.Tensor:
    """The fixed positions of "Attention is all you need": ``[n, dim]``."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(n, dim)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return pe


def rotate(x: torch.Tensor, offset: int = 0) -> torch.Tensor:
    """Rotary positions (RoFormer): rotate pairs of channels of ``[B, H, T, D]`` by angle
    ``position · θ_i``, so that ``q·k`` depends on the relative position only. ``offset``:
    the position of the first step (tokens already in a key-value cache)."""
    t, d = x.shape[-2], x.shape[-1]
    cos, sin = _rotary_table(d, 1 << max(10, (offset + t - 1).bit_length()), x.device)
    cos, sin = cos[offset: offset + t].to(x.dtype), sin[offset: offset + t].to(x.dtype)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


@functools.lru_cache(maxsize=16)
def _rotary_table(d: int, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of ``position · θ_i`` for positions ``0..n-1``: ``[n, d]`` each (cached:
    generation asks for one position per token). Built outside inference mode even when
    first asked for under it: a cached inference tensor would break later training."""
    with torch.inference_mode(False):
        inv = 1.0 / (10000 ** (torch.arange(0, d, 2, dtype=torch.float32, device=device) / d))
        ang = torch.arange(n, dtype=torch.float32, device=device)[:, None] * inv  # [n, D/2]
        return ang.cos().repeat(1, 2), ang.sin().repeat(1, 2)


class SelfAttention(nn.Module):
    def __init__(self, d: int, heads: int, dropout: float, rotary: bool,
                 causal: bool = False) -> None:
        super().__init__()
        self.heads, self.rotary, self.p, self.causal = heads, rotary, dropout, causal
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()

    def forward(self, x: torch.Tensor, mask: torch.Tensor, weights: bool = False,
                cache: dict[str, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, T, C = x.shape  # batch, time, channels
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        past = cache["k"].shape[2] if cache else 0            # tokens already cached
        if self.rotary:  # q and k in one call: [2, B, H, T, D]
            q, k = rotate(torch.stack([q, k]), past).unbind(0)
        if cache is not None:  # key-value cache: a new token attends to every earlier one
            if past:
                k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        if self.causal and T == 1:  # one new token: every cached key is in its past
            keep = torch.ones(1, 1, dtype=torch.bool, device=x.device)
        elif self.causal:  # query t sees keys ≤ past + t; padding comes last, never seen
            keep = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(past)
        else:
            keep = mask[:, None, None, :]                     # [B, 1, 1, T]: attend to tokens
        w = None
        if weights:  # explicit path: the same arithmetic, with the weights kept
            s = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
            w = s.masked_fill(~keep, float("-inf")).softmax(dim=-1)  # [B, H, T, T]
            y = w @ v
        else:
            fast = self.causal and not past  # the fused causal kernel needs no mask tensor
            no_mask = fast or (self.causal and T == 1)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=None if no_mask else keep,
                                               is_causal=fast,
                                               dropout_p=self.p if self.training else 0.0)
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.drop(self.proj(y)), w


class Block(nn.Module):
    """Pre-norm: ``x + attn(norm(x))``, then ``x + mlp(norm(x))``."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = SelfAttention(d, cfg.heads, cfg.dropout, cfg.positions == "rotary",
                                  cfg.causal)
        self.mlp = nn.Sequential(nn.Linear(d, cfg.mlp_ratio * d), activation(cfg.activation),
                                 nn.Linear(cfg.mlp_ratio * d, d),
                                 nn.Dropout(cfg.dropout) if cfg.dropout else nn.Identity())

    def forward(self, x: torch.Tensor, mask: torch.Tensor, weights: bool = False,
                cache: dict[str, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        a, w = self.attn(self.norm1(x), mask, weights, cache)
        x = x + a
        return x + self.mlp(self.norm2(x)), w


class TokenStack(nn.Module):
    """What a text encoder and the seq2seq decoder (models/seq2seq.py) share: positions for
    ``n_pos`` steps, dropout, ``cfg.layers`` blocks and the final norm. The subclass owns
    its token embedding (created first) and how it runs the blocks."""

    def _stack(self, cfg: TransformerConfig, n_pos: int, block: type[Block]) -> None:
        """Create the positions (a learned ``pos`` embedding, a fixed sinusoidal ``table``,
        or for rotary neither), ``drop``, ``blocks`` and ``norm``, in that order."""
        d = cfg.d_model
        self.positions = cfg.positions
        self.pos = nn.Embedding(n_pos, d) if cfg.positions == "learned" else None
        if cfg.positions == "sinusoidal":
            self.register_buffer("table", sinusoidal(n_pos, d), persistent=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(block(cfg) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(d)
        self.out_features = d

    def _position(self, x: torch.Tensor, offset: int) -> torch.Tensor:
        """``x [B, T, C]`` plus the positions ``offset .. offset + T - 1``."""
        t = x.shape[1]
        if self.pos is not None:
            return x + self.pos(torch.arange(offset, offset + t, device=x.device))
        if self.positions == "sinusoidal":
            return x + self.table[offset: offset + t]
        return x  # rotary: positions enter inside attention


class TextTransformer(TokenStack):
    """One text input → ``[B, d_model]``."""

    def __init__(self, cfg: TransformerConfig, vocab_size: int, max_length: int,
                 pad_id: int) -> None:
        super().__init__()
        d = cfg.d_model
        self.pooling = cfg.pooling
        self.n_pos = n_pos = max_length + (cfg.pooling == "cls" and not cfg.causal)
        self.tokens = nn.Embedding(vocab_size, d, padding_idx=pad_id)
        self.cls = nn.Parameter(torch.randn(1, 1, d) * 0.02) \
            if cfg.pooling == "cls" and not cfg.causal else None
        self._stack(cfg, n_pos, Block)

    def _embed(self, text: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, _, mask = trim(text)                               # [B, T], [B, T]
        x = self.tokens(ids)                                    # [B, T, C]
        if self.cls is not None:
            x = torch.cat([self.cls.expand(len(x), -1, -1), x], dim=1)
            mask = torch.cat([mask.new_ones(len(x), 1), mask], dim=1)
        return self.drop(self._position(x, 0)), mask

    def states(self, text: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-token states ``[B, T, C]`` (a causal model's output)."""
        x, mask = self._embed(text)
        for block in self.blocks:
            x, _ = block(x, mask)
        return self.norm(x)

    def pooled_and_states(self, text: dict[str, torch.Tensor]
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward``'s pooled vector and ``states`` from one run (mean or max pooling:
        a tagged text has no cls token)."""
        x, mask = self._embed(text)
        for block in self.blocks:
            x, _ = block(x, mask)
        x = self.norm(x)                                        # [B, T, C]
        return masked_pool(x, mask, self.pooling), x

    def step(self, ids: torch.Tensor, caches: list[dict[str, torch.Tensor]] | None,
             offset: int) -> torch.Tensor:
        """Next-token logits ``[B, T, V]`` for ``ids [B, T]`` that follow ``offset`` cached
        tokens; with ``caches`` (one dict per block) the keys and values are kept."""
        x = self._position(self.tokens(ids), offset)
        mask = torch.ones(ids.shape, dtype=torch.bool, device=ids.device)
        for i, block in enumerate(self.blocks):
            x, _ = block(x, mask, cache=caches[i] if caches is not None else None)
        return self.norm(x) @ self.tokens.weight.T  # tied, as in Transformer.lm_logits

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


class SeriesTransformer(TextTransformer):
    """One timeseries input: windows ``[B, L, k]`` → ``[B, d_model]``."""

    def __init__(self, cfg: TransformerConfig, channels: int, lookback: int) -> None:
        super().__init__(cfg, 1, lookback, 0)
        del self.tokens  # steps are projected, not looked up
        self.proj = nn.Linear(channels, cfg.d_model)

    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        h = self.proj(x)                                        # [B, L, C]
        mask = torch.ones(h.shape[:2], dtype=torch.bool, device=h.device)
        if self.cls is not None:
            h = torch.cat([self.cls.expand(len(h), -1, -1), h], dim=1)
            mask = torch.cat([mask.new_ones(len(h), 1), mask], dim=1)
        return self.drop(self._position(h, 0)), mask


@register_model("transformer")
class Transformer(SequenceBackbone):
    """A transformer encoder per text (and timeseries) input; tabular inputs join the dense
    head (the inputs are wired by :class:`SequenceBackbone`).

    What it reads and predicts is declared by :class:`TransformerConfig` (build_model
    checks it)."""

    config_class = TransformerConfig

    def __init__(self, cfg: TransformerConfig, desc: dict[str, Any]) -> None:
        super().__init__()
        width = self._build_inputs(
            "transformer", desc,
            lambda t: TextTransformer(cfg, t["vocab_size"], t["max_length"], t["pad_id"]),
            lambda s: SeriesTransformer(cfg, s["channels"], s["lookback"]))
        self.causal = cfg.causal
        if cfg.causal and (len(self.text_names) != 1 or desc["numeric_dim"]
                           or desc["category_sizes"]):
            raise ConfigError("a causal transformer (a language model) reads exactly one text "
                              f"input and nothing else; got texts {self.text_names}")
        self.dense, self.out_features = dense_stack(width, cfg.dense, cfg.activation,
                                                    cfg.dropout)
        if self.per_token:
            self.dense, self.out_features = nn.Identity(), cfg.d_model
        self.apply(_init)

    @classmethod
    def from_config(cls, cfg: TransformerConfig, desc: dict[str, Any]) -> Transformer:
        return cls(cfg, desc)

    def forward(self, inputs: dict[str, Any]) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.causal:  # per-token states [B, T, C] for the language-model head
            return self.encoders[self.text_names[0]].states(inputs[self.text_names[0]])
        if self.per_token:  # per-token states [B, T, C] for the tags head
            return self.encoders[self.tagged].states(inputs[self.tagged])
        if self.joint:  # ([B, F] for the other heads, [B, T, C] for the tags head)
            pooled, states = self.joint_features(inputs)
            return self.dense(pooled), states
        return self.dense(self.features(inputs))                 # [B, F_in] → [B, F]

    def lm_logits(self, h: torch.Tensor) -> torch.Tensor:
        """States ``[B, T, C]`` → next-token logits ``[B, T, V]`` with the token embedding as
        the output layer (weight tying: one matrix, no extra parameters)."""
        return h @ self.encoders[self.text_names[0]].tokens.weight.T

    @torch.no_grad()
    def attention_maps(self, inputs: dict[str, Any]) -> dict[str, list[torch.Tensor]]:
        """Attention weights per text input and block: ``[B, heads, T, T]`` each (T is the
        batch's longest text, plus one for the cls token)."""
        return {n: self.encoders[n].attention_maps(inputs[n]) for n in self.text_names}


# ---------------------------------------------------------------- language-model decoding


class Decoder:
    """Generation from a causal transformer: sampling (temperature, top-k, top-p), greedy
    and beam search, each new token one cached step (``use_cache=False`` recomputes the
    whole window every token: the baseline for benchmarks/generation.py)."""

    def __init__(self, model: Transformer,
                 step: Callable[[torch.Tensor, Any, int], torch.Tensor] | None = None) -> None:
        """``step``: how one step runs (``TextTransformer.step``'s signature; default that
        method): a generation backend (inference/lm_steps.py) passes its own."""
        if not model.causal:
            raise ConfigError("generation needs a causal transformer (model.causal: true)")
        self.enc: TextTransformer = model.encoders[model.text_names[0]]  # type: ignore[assignment]
        self.window = self.enc.n_pos
        self.step = step or self.enc.step

    def sample(self, ids: list[int], max_tokens: int, *, temperature: float = 1.0,
               top_k: int | None = None, top_p: float | None = None, greedy: bool = False,
               use_cache: bool = True, seed: int | None = None) -> list[int]:
        """The tokens that follow ``ids`` (which must be non-empty)."""
        return list(self.stream(ids, max_tokens, temperature=temperature, top_k=top_k,
                                top_p=top_p, greedy=greedy, use_cache=use_cache, seed=seed))

    @torch.inference_mode()
    def stream(self, ids: list[int], max_tokens: int, *, temperature: float = 1.0,
               top_k: int | None = None, top_p: float | None = None, greedy: bool = False,
               use_cache: bool = True, seed: int | None = None) -> Iterator[int]:
        """:meth:`sample`, one token at a time as each is chosen (a server streams them)."""
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        out = list(ids)[-self.window:]
        caches: list[dict[str, torch.Tensor]] | None = None
        logits = self._prime(out, use_cache)
        for _ in range(max_tokens):
            nxt = pick(logits, temperature, top_k, top_p, greedy, g)
            yield nxt
            out.append(nxt)
            if not use_cache:  # recompute the whole (sliding) window
                logits = self.step(torch.tensor([out[-self.window:]]), None, 0)[0, -1]
            elif len(out) >= self.window:  # positions run out: re-prime on the recent half
                out = out[-self.window // 2:]
                logits = self._prime(out, True)
            else:
                caches = self._caches
                logits = self.step(torch.tensor([[nxt]]), caches, len(out) - 1)[0, -1]

    def _prime(self, ids: list[int], use_cache: bool) -> torch.Tensor:
        self._caches: list[dict[str, torch.Tensor]] | None = \
            [{} for _ in self.enc.blocks] if use_cache else None
        return self.step(torch.tensor([ids]), self._caches, 0)[0, -1]  # [V]

    @torch.inference_mode()
    def beam(self, ids: list[int], max_tokens: int, beams: int = 4) -> list[int]:
        """Beam search: the continuation with the highest total log-probability found
        keeping ``beams`` candidates (capped at the position window)."""
        ids = list(ids)[-self.window:]
        max_tokens = min(max_tokens, self.window - len(ids))
        seqs: list[list[int]] = [[]]
        scores = torch.zeros(1)
        logits = self._prime(ids, True)[None]                 # [1, V]
        caches = self._caches
        if caches is None:  # _prime(ids, True) sets them
            raise RuntimeError("beam search needs the key/value caches the prompt fills")
        for t in range(max_tokens):
            total = scores[:, None] + logits.log_softmax(-1)  # [b, V]
            top = total.flatten().topk(min(beams, total.numel()))
            src = top.indices // total.shape[1]
            tok = top.indices % total.shape[1]
            seqs = [seqs[s] + [int(k)] for s, k in zip(src.tolist(), tok.tolist())]
            scores = top.values
            for c in caches:  # each beam continues the cache of the beam it came from
                c["k"], c["v"] = c["k"][src], c["v"][src]
            logits = self.step(tok[:, None], caches, len(ids) + t)[:, -1]
        return seqs[int(scores.argmax())]


def pick(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None,
         greedy: bool, generator: torch.Generator | None) -> int:
    """One token from logits ``[V]``: argmax, or a sample from the tempered distribution
    cut to the ``top_k`` most likely and to the smallest set holding ``top_p`` of the mass."""
    if greedy or temperature < 1e-6:  # the limit of sampling as the temperature falls
        return int(logits.argmax())      # (and no overflow of logits / temperature)
    logits = logits.float() / temperature
    if top_k:
        kth = logits.topk(min(top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) > top_p  # keep the token that crosses top_p
        logits = logits.masked_fill(torch.zeros_like(drop).scatter(0, order, drop),
                                    float("-inf"))
    return int(torch.multinomial(logits.softmax(-1), 1, generator=generator))


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
