"""A bag of tokens and hashed token n-grams (fastText-style): fast text classification.

    ids [B, T] ──▶ tokens ids[t]                       (one vector per vocabulary entry)
               ──▶ n-grams (ids[t], …, ids[t+n-1])    hashed into ``buckets`` shared vectors
    one embedding table [vocab + buckets, E] ──▶ pooled over the text's tokens and n-grams
      (mean | sqrt | sum)                      ──▶ [B, E]
    concat over text inputs (+ tabular features) ──▶ dropout ──▶ dense layers ──▶ [B, F]

With no dense layers the heads make it a linear model over averaged n-gram vectors, as in
Joulin et al. (2016), "Bag of Tricks for Efficient Text Classification". ``weighting: idf``
weighs each vector by its row's inverse document frequency in the training split (a
buffer, fitted by :meth:`Bag.fit_data` before training and saved with the weights), so
the average leans on rare, telling n-grams as TF-IDF does. The n-grams are of
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
        self.weighted, self.unique = cfg.weighting == "idf", cfg.unique
        if self.weighted:  # 1 until fit_data counts the training documents
            self.register_buffer("idf", torch.ones(rows))
        nn.init.uniform_(self.embedding.weight, -1.0 / cfg.embedding_dim,
                         1.0 / cfg.embedding_dim)
        with torch.no_grad():
            self.embedding.weight[pad_id].zero_()
        self.out_features = cfg.embedding_dim

    def forward(self, text: dict[str, torch.Tensor]) -> torch.Tensor:
        ids, _, mask = trim(text)                                           # [B, T]
        rows, valid = ngram_ids(ids, mask, self.ngrams, self.vocab_size, self.buckets)
        rows = rows.masked_fill(~valid, self.pad_id)                        # [B, T·n]
        if self.unique:  # pooling ignores order: sort, then drop each repeat of a row
            rows, order = rows.sort(dim=1)
            valid = valid.gather(1, order)
            repeat = torch.zeros_like(valid)
            repeat[:, 1:] = rows[:, 1:] == rows[:, :-1]
            valid = valid & ~repeat
            rows = rows.masked_fill(~valid, self.pad_id)
        vectors = self.embedding(rows)        # the pad row is zero: padding adds nothing
        if self.weighted:
            w = self.idf[rows] * valid                                      # [B, T·n]
            total = (vectors * w.unsqueeze(-1).to(vectors.dtype)).sum(1)
            # mean: the weighted mean; sqrt: divided by the weights' L2 norm, as TF-IDF
            # vectors are normalised (both are the plain forms when every weight is 1)
            count = (w * w if self.pooling == "sqrt" else w).sum(1, keepdim=True)
            count = count.clamp(min=1e-6).to(total.dtype)
        else:
            total = vectors.sum(1)
            count = valid.sum(1, keepdim=True).clamp(min=1).to(total.dtype)  # [B, 1]
        if self.pooling == "mean":
            return total / count
        return total / count.sqrt() if self.pooling == "sqrt" else total   # [B, E]

    @torch.no_grad()
    def fit_idf(self, text: dict[str, torch.Tensor], batch: int = 4096) -> None:
        """Inverse document frequencies of every row over the training texts ``text``
        (sklearn's smooth form: ``log((1 + N) / (1 + df)) + 1``)."""
        ids_all, lengths_all = text["ids"], text["lengths"]
        if ids_all.dim() == 3:  # chunks: every window is a document of its own
            ids_all, lengths_all = ids_all.flatten(0, 1), lengths_all.flatten()
            ids_all, lengths_all = ids_all[lengths_all > 0], lengths_all[lengths_all > 0]
        n_rows = self.idf.numel()
        df = torch.zeros(n_rows, dtype=torch.long)
        for start in range(0, len(ids_all), batch):
            part = {"ids": ids_all[start: start + batch],
                    "lengths": lengths_all[start: start + batch]}
            ids, _, mask = trim(part)
            rows, valid = ngram_ids(ids, mask, self.ngrams, self.vocab_size, self.buckets)
            doc = torch.arange(len(rows))[:, None].expand_as(rows)
            seen = torch.unique(doc[valid] * n_rows + rows[valid])   # each row once a text
            df += torch.bincount(seen % n_rows, minlength=n_rows)
        n = float(len(ids_all))
        self.idf.copy_(torch.log((1.0 + n) / (1.0 + df.double())).float() + 1.0)


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

    def fit_data(self, inputs: dict[str, Any]) -> None:
        """Statistics of the training inputs, before training: the idf of each text's
        bag (``weighting: idf``); nothing otherwise."""
        for name in self.text_names:
            enc = self.encoders[name]
            enc = getattr(enc, "encoder", enc)  # a chunked input's ChunkPool wraps it
            if getattr(enc, "weighted", False):
                enc.fit_idf(inputs[name])


def _no_series(spec: dict[str, Any]) -> nn.Module:
    raise ConfigError("model bag cannot read timeseries inputs; use family rnn or "
                      "transformer")
