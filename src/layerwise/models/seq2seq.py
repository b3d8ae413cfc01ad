"""Encoder-decoder transformer for sequence to sequence: one text in, one text out.

    source ids [B, S] ──encoder (models/transformer.py's TextTransformer)──▶ memory [B, S, C]
    target ids [B, L+2] = <bos> t1 .. tn <eos> <pad> ..  (data/seq2seq.py)
      decoder input = ids[:, :-1] ──token embedding (+ positions)──▶ x [B, L+1, C]
      for each decoder block:  x = x + self_attention(norm(x))     causal, key-value cache
                               x = x + cross_attention(norm(x), memory)   source padding masked
                               x = x + mlp(norm(x))
      norm(x) ──▶ states [B, L+1, C] ──tied output layer (token embedding)──▶ logits [B, L+1, V]

Training is teacher forcing: the decoder reads the true previous tokens and every position
is trained at once. Generation (``generate``) runs the encoder once, computes each decoder
block's cross-attention keys and values once, and feeds one token per step through a
key-value cache of the self-attention; it decodes greedily, by sampling, or by beam search
over summed log-probabilities. The blocks, attention and positions are those of
models/transformer.py; this file adds cross-attention and the decoding loops.

``attention_maps(inputs)`` returns the encoder, decoder and cross-attention weights
(``cross``: one ``[B, heads, T_out, S]`` tensor per decoder block) for visualisation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from layerwise.config import Seq2SeqConfig, TransformerConfig
from layerwise.errors import ConfigError
from layerwise.models.layers import trim
from layerwise.models.registry import register_model
from layerwise.models.transformer import Block, TextTransformer, TokenStack, _init

KV = tuple[torch.Tensor, torch.Tensor]  # cross-attention keys and values, [B, H, S, D] each


class CrossAttention(nn.Module):
    """Queries from the decoder, keys and values from the encoder's memory."""

    def __init__(self, d: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.p = heads, dropout
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.proj = nn.Linear(d, d)
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()

    def keys(self, memory: torch.Tensor) -> KV:
        """Keys and values of the memory ``[B, S, C]``: computed once per source."""
        B, S, C = memory.shape
        k, v = self.kv(memory).view(B, S, 2, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        return k, v

    def forward(self, x: torch.Tensor, kv: KV, mask: torch.Tensor, weights: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, T, C = x.shape
        q = self.q(x).view(B, T, self.heads, C // self.heads).transpose(1, 2)  # [B, H, T, D]
        k, v = kv
        keep = mask[:, None, None, :]                        # [B, 1, 1, S]: real source tokens
        w = None
        if weights:
            s = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
            w = s.masked_fill(~keep, float("-inf")).softmax(dim=-1)  # [B, H, T, S]
            y = w @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=keep,
                                               dropout_p=self.p if self.training else 0.0)
        return self.drop(self.proj(y.transpose(1, 2).reshape(B, T, C))), w


class DecoderBlock(Block):
    """transformer.Block (causal self-attention, MLP) with cross-attention between them."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__(cfg)
        self.norm_cross = nn.LayerNorm(cfg.d_model)
        self.cross = CrossAttention(cfg.d_model, cfg.heads, cfg.dropout)

    def forward(self, x: torch.Tensor, kv: KV, src_mask: torch.Tensor,  # type: ignore[override]
                weights: bool = False, cache: dict[str, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        a, w_self = self.attn(self.norm1(x), src_mask, weights, cache)  # causal: mask unused
        x = x + a
        c, w_cross = self.cross(self.norm_cross(x), kv, src_mask, weights)
        x = x + c
        return x + self.mlp(self.norm2(x)), w_self, w_cross


@register_model("seq2seq")
class Seq2Seq(TokenStack):
    """One text input → decoder states ``[B, L+1, C]`` for one sequence output (the
    decoder's positions, blocks and norm are a :class:`TokenStack`'s).

    What it reads and predicts is declared by :class:`Seq2SeqConfig` (build_model checks
    it)."""

    config_class = Seq2SeqConfig

    def __init__(self, cfg: Seq2SeqConfig, desc: dict[str, Any]) -> None:
        super().__init__()
        texts, seqs = desc.get("texts", {}), desc.get("sequences", {})
        if len(texts) != 1 or len(seqs) != 1 or desc.get("numeric_dim") \
                or desc.get("category_sizes"):
            raise ConfigError("model seq2seq reads exactly one text input and predicts one "
                              f"sequence output; got text inputs {sorted(texts)}, sequence "
                              f"outputs {sorted(seqs)}")
        (self.source, src), = texts.items()
        (self.target, tgt), = seqs.items()
        common = dict(family="transformer", d_model=cfg.d_model, heads=cfg.heads,
                      mlp_ratio=cfg.mlp_ratio, dropout=cfg.dropout, positions=cfg.positions,
                      activation=cfg.activation)
        enc_cfg = TransformerConfig(**common, layers=cfg.encoder_layers)
        dec_cfg = TransformerConfig(**common, layers=cfg.decoder_layers, causal=True)
        self.encoder = TextTransformer(enc_cfg, src["vocab_size"], src["max_length"],
                                       src["pad_id"])
        self.bos, self.eos, self.pad = tgt["bos_id"], tgt["eos_id"], tgt["pad_id"]
        self.max_length = tgt["max_length"]           # tokens generated at most
        self.n_pos = tgt["max_length"] + 1            # decoder input: <bos> + max_length
        self.tokens = nn.Embedding(tgt["vocab_size"], cfg.d_model, padding_idx=self.pad)
        self._stack(dec_cfg, self.n_pos, DecoderBlock)  # positions, drop, blocks, norm
        self.apply(_init)

    @classmethod
    def from_config(cls, cfg: Seq2SeqConfig, desc: dict[str, Any]) -> Seq2Seq:
        return cls(cfg, desc)

    # -- the pieces ------------------------------------------------------------------------
    def encode(self, text: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Memory ``[B, S, C]`` and its mask ``[B, S]`` (the batch cut to its longest text)."""
        _, _, mask = trim(text)
        return self.encoder.states(text), mask

    def _embed(self, ids: torch.Tensor, offset: int) -> torch.Tensor:
        return self.drop(self._position(self.tokens(ids), offset))   # [B, T, C]

    def step(self, ids: torch.Tensor, kv: list[KV], mask: torch.Tensor,
             caches: list[dict[str, torch.Tensor]] | None, offset: int) -> torch.Tensor:
        """Decoder states ``[B, T, C]`` for ``ids [B, T]`` that follow ``offset`` cached
        tokens; with ``caches`` (one dict per block) the self-attention keys are kept."""
        x = self._embed(ids, offset)
        for i, block in enumerate(self.blocks):
            x, _, _ = block(x, kv[i], mask, cache=caches[i] if caches is not None else None)
        return self.norm(x)

    def cross_keys(self, memory: torch.Tensor) -> list[KV]:
        return [b.cross.keys(memory) for b in self.blocks]  # type: ignore[union-attr,operator]

    def forward(self, inputs: dict[str, Any]) -> torch.Tensor:
        """Teacher forcing: ``inputs[target]`` holds the targets; returns ``[B, L+1, C]``."""
        memory, mask = self.encode(inputs[self.source])
        ids = inputs[self.target][:, :-1]                  # <bos> t1 .. tn (<eos> <pad> ..)
        return self.step(ids, self.cross_keys(memory), mask, None, 0)

    def lm_logits(self, h: torch.Tensor) -> torch.Tensor:
        """States ``[B, T, C]`` → logits ``[B, T, V]`` through the tied token embedding."""
        return h @ self.tokens.weight.T

    @torch.no_grad()
    def attention_maps(self, inputs: dict[str, Any]) -> dict[str, list[torch.Tensor]]:
        """Weights per block, teacher-forced on ``inputs[target]`` (training rows, or
        ``teacher_ids`` of generated outputs): ``encoder [B, H, S, S]``, ``decoder
        [B, H, T, T]`` and ``cross [B, H, T, S]`` (T = L + 1, S = the longest source)."""
        enc = self.encoder.attention_maps(inputs[self.source])
        memory, mask = self.encode(inputs[self.source])
        x = self._embed(inputs[self.target][:, :-1], 0)
        maps: dict[str, list[torch.Tensor]] = {"encoder": enc, "decoder": [], "cross": []}
        for block, kv in zip(self.blocks, self.cross_keys(memory), strict=True):
            x, w_self, w_cross = block(x, kv, mask, weights=True)
            maps["decoder"].append(w_self)
            maps["cross"].append(w_cross)
        return maps

    def teacher_ids(self, outputs: list[list[int]]) -> torch.Tensor:
        """Generated token ids → the ``[B, L+2]`` target rows that ``forward`` reads (an
        output that reached ``max_length`` has no ``<eos>``, as in data/seq2seq.py)."""
        rows = torch.full((len(outputs), self.max_length + 2), self.pad, dtype=torch.long)
        for i, ids in enumerate(outputs):
            ids = ids[: self.max_length]
            row = [self.bos] + ids + ([self.eos] if len(ids) < self.max_length else [])
            rows[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        return rows

    # -- decoding --------------------------------------------------------------------------
    @torch.inference_mode()
    def generate(self, text: dict[str, torch.Tensor], *, beams: int = 1,
                 max_length: int | None = None, use_cache: bool = True,
                 choose: Callable[[torch.Tensor], torch.Tensor] | None = None
                 ) -> tuple[list[list[int]], list[float]]:
        """Token ids (without ``<bos>``/``<eos>``) and their total log-probability, per
        source row. ``beams > 1``: beam search; else greedy, or ``choose(logits [B, V]) →
        ids [B]`` (sampling). ``use_cache=False`` recomputes the prefix every step."""
        was = self.training
        self.eval()
        try:
            steps = min(max_length or self.max_length, self.max_length)
            beams = min(beams, self.tokens.num_embeddings - 2)  # no more than real tokens
            memory, mask = self.encode(text)
            if beams > 1:
                return self._beam(memory, mask, beams, steps, use_cache)
            return self._greedy(memory, mask, steps, use_cache, choose)
        finally:
            self.train(was)

    def _next(self, out: torch.Tensor, kv: list[KV], mask: torch.Tensor,
              caches: list[dict[str, torch.Tensor]] | None) -> torch.Tensor:
        """Log-probabilities ``[B, V]`` of the token after ``out [B, t]``."""
        if caches is None:  # the baseline: the whole prefix again
            h = self.step(out, kv, mask, None, 0)[:, -1]
        else:  # one new token through the cache
            h = self.step(out[:, -1:], kv, mask, caches, out.shape[1] - 1)[:, 0]
        logits = self.lm_logits(h).float()
        logits[:, [self.pad, self.bos]] = float("-inf")  # never targets: never generated
        return logits.log_softmax(-1)

    def _greedy(self, memory: torch.Tensor, mask: torch.Tensor, steps: int, use_cache: bool,
                choose: Callable[[torch.Tensor], torch.Tensor] | None
                ) -> tuple[list[list[int]], list[float]]:
        B = memory.shape[0]
        kv = self.cross_keys(memory)                  # once per source, reused every step
        caches: list[dict[str, torch.Tensor]] | None = \
            [{} for _ in self.blocks] if use_cache else None
        out = torch.full((B, 1), self.bos, dtype=torch.long, device=memory.device)
        done = torch.zeros(B, dtype=torch.bool, device=memory.device)
        score = torch.zeros(B, device=memory.device)
        for _ in range(steps):
            lp = self._next(out, kv, mask, caches)                           # [B, V]
            nxt = choose(lp) if choose is not None else lp.argmax(-1)
            nxt = nxt.masked_fill(done, self.pad)    # finished rows idle on padding
            score += lp.gather(1, nxt[:, None])[:, 0].masked_fill(done, 0.0)
            out = torch.cat([out, nxt[:, None]], dim=1)
            done |= nxt == self.eos
            if bool(done.all()):
                break
        return [self._strip(r) for r in out[:, 1:].tolist()], score.tolist()

    def _beam(self, memory: torch.Tensor, mask: torch.Tensor, k: int, steps: int,
              use_cache: bool) -> tuple[list[list[int]], list[float]]:
        """``k`` hypotheses per source, ranked by summed log-probability. A finished
        hypothesis keeps its score (its only continuation is padding, at log-probability
        0), so it competes with the open ones on equal terms; a source is decided once its
        best finished hypothesis beats every open one (open scores can only fall)."""
        B, dev = memory.shape[0], memory.device
        memory, mask = memory.repeat_interleave(k, 0), mask.repeat_interleave(k, 0)
        kv = self.cross_keys(memory)                  # rows b*k .. b*k+k-1: source b
        caches: list[dict[str, torch.Tensor]] | None = \
            [{} for _ in self.blocks] if use_cache else None
        out = torch.full((B * k, 1), self.bos, dtype=torch.long, device=dev)
        scores = torch.full((B, k), float("-inf"), device=dev)
        scores[:, 0] = 0.0                            # one live hypothesis to start from
        done = torch.zeros(B * k, dtype=torch.bool, device=dev)
        for _ in range(steps):
            lp = self._next(out, kv, mask, caches)                            # [B*k, V]
            idle = torch.full_like(lp, float("-inf"))
            idle[:, self.pad] = 0.0
            lp = torch.where(done[:, None], idle, lp)
            V = lp.shape[1]
            total = (scores.view(-1, 1) + lp).view(B, k * V)
            top = total.topk(k, dim=1)                                        # [B, k]
            src = (top.indices // V + torch.arange(B, device=dev)[:, None] * k).view(-1)
            tok = (top.indices % V).view(-1)
            scores = top.values
            out = torch.cat([out[src], tok[:, None]], dim=1)
            done = done[src] | (tok == self.eos)
            if caches is not None:  # each hypothesis continues its parent's cache
                for c in caches:
                    c["k"], c["v"] = c["k"][src], c["v"][src]
            open_best = scores.masked_fill(done.view(B, k), float("-inf")).amax(1)
            done_best = scores.masked_fill(~done.view(B, k), float("-inf")).amax(1)
            if bool((done_best >= open_best).all()):
                break
        best = scores.argmax(1)                                               # [B]
        rows = out.view(B, k, -1)[torch.arange(B, device=dev), best, 1:]
        return [self._strip(r) for r in rows.tolist()], scores.max(1).values.tolist()

    def _strip(self, ids: list[int]) -> list[int]:
        if self.eos in ids:
            ids = ids[: ids.index(self.eos)]
        return [i for i in ids if i != self.pad]
