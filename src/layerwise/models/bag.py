"""A bag of tokens and hashed token n-grams (fastText-style): fast text classification.

    ids [B, T] ──▶ tokens ids[t]                       (one vector per vocabulary entry)
               ──▶ n-grams (ids[t], …, ids[t+n-1])    hashed into ``buckets`` shared vectors
    one embedding table [vocab + buckets, E] ──▶ pooled over the text's tokens and n-grams
      (mean | sqrt | sum)                      ──▶ [B, E]
    concat over text inputs (+ tabular features) ──▶ dropout ──▶ dense layers ──▶ [B, F]

With no dense layers the heads make it a linear model over averaged n-gram vectors, as in
Joulin et al. (2016), "Bag of Tricks for Efficient Text Classification". The n-grams are of
the input's own tokens: word n-grams with ``tokenizer: word``, character n-grams with
``tokenizer: char``. Hashing works on token ids, so a saved model needs no n-gram table:
the vocabulary (in the artifact) and the hash below give every n-gram its bucket.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from layerwise.config import BagConfig
from layerwise.errors import ConfigError
from layerwise.models.layers import SequenceBackbone, dense_stack, trim
from layerwise.models.registry import register_model

_PRIME = 1_000_003       # multiplier of the rolling n-gram hash
_MODULUS = 2_147_483_647  # 2**31 - 1: keeps every step of the hash inside int64


def ngram_ids(ids: torch.Tensor, mask: torch.Tensor, n_max: int, vocab_size: int,
              buckets: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every token and n-gram (n ≤ ``n_max``) of a batch as rows of the embedding table:
    ``(ids [B, T·n_max], valid [B, T·n_max])``. Token ids keep their place; an n-gram of
    n ≥ 2 starting at ``t`` is ``vocab_size + hash(ids[t:t+n]) mod buckets``."""
    parts, valid = [ids], [mask]
    h = ids.long()
    for n in range(2, n_max + 1):
        t = ids.shape[1] - n + 1
        if t <= 0:
            break
        h = (h[:, :t] * _PRIME + ids[:, n - 1:].long()) % _MODULUS
        parts.append(vocab_size + (h * n) % buckets)  # the length joins the hash
        valid.append(mask[:, n - 1:])                  # all n tokens are real
    return torch.cat(parts, dim=1), torch.cat(valid, dim=1)


class BagEncoder(nn.Module):
    """One text input → the pooled vector of its tokens and n-grams ``[B, E]``."""

    def __init__(self, cfg: BagConfig, vocab_size: int, pad_id: int) -> None:
        super().__init__()
        self.vocab_size, self.pad_id = vocab_size, pad_id
        self.ngrams, self.buckets, self.pooling = cfg.ngrams, cfg.buckets, cfg.pooling
        rows = vocab_size + (cfg.buckets if cfg.ngrams > 1 else 0)
        self.embedding = nn.Embedding(rows, cfg.embedding_dim, padding_idx=pad_id)
        nn.init.uniform_(self.embedding.weight, -1.0 / cfg.embedding_dim,
                         1.0 / cfg.embedding_dim)
        with torch.no_grad():
            self.embedding.weight[pad_id].zero_()
        self.out_features = cfg.embedding_dim

    def forward(self, text: dict[str, torch.Tensor]) -> torch.Tensor:
        ids, _, mask = trim(text)                                           # [B, T]
        rows, valid = ngram_ids(ids, mask, self.ngrams, self.vocab_size, self.buckets)
        rows = rows.masked_fill(~valid, self.pad_id)                        # [B, T·n]
        total = self.embedding(rows).sum(1)   # the pad row is zero: padding adds nothing
        count = valid.sum(1, keepdim=True).clamp(min=1).to(total.dtype)    # [B, 1]
        if self.pooling == "mean":
            return total / count
        return total / count.sqrt() if self.pooling == "sqrt" else total   # [B, E]


@register_model("bag")
class Bag(SequenceBackbone):
    """One bag encoder per text input; tabular inputs join before the dense head. What it
    reads and predicts is declared by :class:`BagConfig` (build_model checks it)."""

    config_class = BagConfig

    def __init__(self, cfg: BagConfig, desc: dict[str, Any]) -> None:
        super().__init__()
        width = self._build_inputs(
            "bag", desc, lambda t: BagEncoder(cfg, t["vocab_size"], t["pad_id"]),
            _no_series)
        self.drop = nn.Dropout(cfg.dropout)
        self.dense, self.out_features = dense_stack(width, cfg.dense, cfg.activation,
                                                    cfg.dropout)

    @classmethod
    def from_config(cls, cfg: BagConfig, desc: dict[str, Any]) -> Bag:
        return cls(cfg, desc)

    def forward(self, inputs: dict[str, Any]) -> torch.Tensor:
        return self.dense(self.drop(self.features(inputs)))      # [B, F_in] → [B, F]


def _no_series(spec: dict[str, Any]) -> nn.Module:
    raise ConfigError("model bag cannot read timeseries inputs; use family rnn or "
                      "transformer")
