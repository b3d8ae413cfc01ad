"""The sequential family: SASRec (Kang & McAuley, 2018), a causal Transformer over each
user's most recent items, and the time-ordered histories it reads.

    history [B, L] catalogue items, oldest first, right-padded with -1
      ──item embedding · √d + learned position──▶ x [B, L, d]   (dropout; padding zeroed)
      for each block (layerwise.models.transformer.Block, causal):  x = x + attn(norm(x))
                                                                    x = x + ffn(norm(x))
      norm(x) ──▶ states [B, L, d]: state t has read items 0..t and nothing after
    score(user, item) = <the state after the last real item, the item's embedding>

One item embedding serves as input and output (as in the paper). A training row
(``training_rows``) is a user's last ``max_length + 1`` training items: the inputs are all
but the last, the targets all but the first, so every position learns to predict the item
that followed it; causal attention keeps position t from reading later items, and the
padding comes last, so no real position reads it (``windows: all`` adds a row for each
earlier stretch of a longer history). Negatives are drawn per position
(``negatives`` each) among the items the user never met in training, from torch's global
generator, as the other families draw them (a resumed run draws the same ones).

A history holds only what came before the item it is asked to predict: the validation
item is scored after the training items, the test item after the training items and the
validation item (``user_histories(..., through=...)``). The artifact keeps each user's
whole known history (through the test item) in the ``history`` buffer, the input of
``recommend``; a model fresh from ``SASRec(...)`` holds empty histories, so neither
training nor evaluation can read a held-out item from it by mistake.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from layerwise.config import TransformerConfig
from layerwise.config.recommend import SASRecConfig
from layerwise.data.batching import TensorData
from layerwise.models.transformer import Block
from layerwise.recommend.data import Interactions, sample_negatives
from layerwise.recommend.models import _Recommender

PAD = -1  # a history's empty places (catalogue indices are ≥ 0)
THROUGH = ("train", "validation", "test")


def user_sequences(data: Interactions, through: str = "train") -> list[list[int]]:
    """Each user's items in time order, by user index (0, the unknown user, has none):
    the training items, then the validation item (``through`` "validation" or "test"),
    then the test item (``through`` "test")."""
    if through not in THROUGH:
        raise ValueError(f"through must be one of {', '.join(THROUGH)}; got {through!r}")
    order = data.train_order if data.train_order is not None else torch.arange(len(data.train))
    seqs: list[list[int]] = [[] for _ in range(len(data.users) + 1)]
    for u, item in data.train[order].tolist():
        seqs[u].append(item)
    for split in THROUGH[1:THROUGH.index(through) + 1]:
        for u, item in getattr(data, split).tolist():
            seqs[u].append(item)
    return seqs


def _pad(seq: list[int], length: int) -> list[int]:
    return seq + [PAD] * (length - len(seq))


def user_histories(data: Interactions, through: str, max_length: int) -> torch.Tensor:
    """``[n_users + 1, max_length]``: each user's last ``max_length`` items through
    ``through`` (see :func:`user_sequences`), oldest first, right-padded with -1."""
    rows = [_pad(s[-max_length:], max_length) for s in user_sequences(data, through)]
    return torch.tensor(rows, dtype=torch.long).reshape(-1, max_length)


def training_rows(data: Interactions, max_length: int, windows: str = "last"
                  ) -> TensorData:
    """One row per user with at least two training items: ``seq`` (the last
    ``max_length + 1`` training items but the last) and ``next`` (the item after each),
    both ``[R, max_length]``, right-padded with -1; with ``windows="all"`` also one row
    per earlier stretch of ``max_length + 1`` items (each overlapping the next by one
    item, so each training item is a target once). Training items only: the validation
    and test items are never an input or a target."""
    users, seqs, nexts = [], [], []
    for u, whole in enumerate(user_sequences(data, "train")):
        end = len(whole)
        while end >= 2:
            s = whole[max(0, end - max_length - 1):end]
            users.append(u)
            seqs.append(_pad(s[:-1], max_length))
            nexts.append(_pad(s[1:], max_length))
            end = end - max_length if windows == "all" else 0
    shape = (-1, max_length)
    inputs = {"user": torch.tensor(users, dtype=torch.long),
              "seq": torch.tensor(seqs, dtype=torch.long).reshape(shape),
              "next": torch.tensor(nexts, dtype=torch.long).reshape(shape)}
    return TensorData(inputs, torch.ones(len(users)))


class SASRec(_Recommender):
    """Self-attentive sequential recommendation: the next item scored against the causal
    Transformer's state after the user's history."""

    history: torch.Tensor  # buffer [n_users + 1, max_length]: what recommend() reads

    def __init__(self, cfg: SASRecConfig, base: dict[str, Any]) -> None:
        super().__init__(**base)
        d = cfg.dim
        self.max_length, self.loss_kind, self.scale = cfg.max_length, cfg.loss, math.sqrt(d)
        self.item = nn.Embedding(self.n_rows, d)
        self.pos = nn.Embedding(cfg.max_length, d)
        self.drop = nn.Dropout(cfg.dropout)
        # the paper's point-wise feed-forward is d → d with a ReLU: mlp_ratio 1
        block = TransformerConfig(family="transformer", d_model=d, heads=cfg.heads,
                                  layers=cfg.layers, mlp_ratio=1, dropout=cfg.dropout,
                                  causal=True, activation="relu")
        self.blocks = nn.ModuleList(Block(block) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(d)
        for m in self.modules():  # small normal weights keep the residual stream in scale
            if isinstance(m, nn.Linear | nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        self.register_buffer("history", torch.full((self.n_users + 1, cfg.max_length), PAD))

    def remember(self, history: torch.Tensor) -> None:
        """Set the histories ``recommend`` reads: ``[n_users + 1, max_length]``."""
        self.history.copy_(history)

    def states(self, seq: torch.Tensor) -> torch.Tensor:
        """``seq [B, L]`` (right-padded with -1) → ``[B, L, d]``, state t after item t."""
        real = seq >= 0
        x = self._embed(seq) * self.scale + self.pos.weight[:seq.shape[1]]
        x = self.drop(x) * real[..., None]
        for block in self.blocks:  # causal: the mask is not read, padding is never seen
            x, _ = block(x, real)
        return self.norm(x)

    def user_state(self, seq: torch.Tensor) -> torch.Tensor:
        """``[B, d]``: the state after the last real item of each history."""
        last = ((seq >= 0).sum(1) - 1).clamp(min=0)
        return self.states(seq)[torch.arange(len(seq), device=seq.device), last]

    def score(self, users: torch.Tensor, items: torch.Tensor,
              history: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of items ``[B]`` or ``[B, C]`` after each user's ``history [B, L]``
        (default: the remembered one, see :meth:`remember`)."""
        seq = self.history[users] if history is None else history
        h = self.user_state(seq)                                          # [B, d]
        h = h.reshape(len(h), *([1] * (items.dim() - 1)), -1)
        return (h * self._embed(items)).sum(-1)

    def known(self, user: int) -> torch.Tensor:
        """Catalogue items ``recommend`` leaves out: the user's training items and every
        item of the remembered history (validation and test items included)."""
        h = self.history[user]
        return torch.cat([super().known(user), h[h >= 0]])

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if "candidates" in inputs:
            return {"scores": self.score(inputs["user"], inputs["candidates"],
                                         inputs.get("history"))}
        seq, nxt = inputs["seq"], inputs["next"]
        h = self.states(seq)                                              # [B, L, d]
        mask = nxt >= 0
        out = {"pos": (h * self._embed(nxt)).sum(-1), "mask": mask}       # [B, L]
        if self.training:
            users = inputs["user"].cpu()[:, None].expand(*nxt.shape).reshape(-1)
            neg, valid = sample_negatives(users, self.n_items, self.seen.cpu(),
                                          self.negatives)                 # [B·L, k]
            neg, valid = neg.to(seq.device).view(*nxt.shape, -1), \
                valid.to(seq.device).view(*nxt.shape, -1)
            out.update(neg=(h[:, :, None] * self._embed(neg)).sum(-1),  # [B, L, k]
                       valid=valid & mask[..., None])
        return out

    def loss(self, outputs: dict[str, torch.Tensor], targets: Any) -> torch.Tensor:
        if "scores" in outputs:
            return super().loss(outputs, targets)
        pos, mask = outputs["pos"].float()[outputs["mask"]], outputs["mask"]
        if "neg" not in outputs:
            return F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos))
        neg, valid = outputs["neg"].float(), outputs["valid"]
        if self.loss_kind == "softmax":  # the next item against its negatives, per position
            logits = torch.cat([pos[:, None], neg[mask].masked_fill(~valid[mask], -math.inf)],
                               dim=1)
            return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long,
                                                        device=logits.device))
        total = F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos), reduction="sum")
        each = F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg), reduction="none")
        return (total + (each * valid).sum()) / max(1, pos.numel() + int(valid.sum()))

    def _embed(self, items: torch.Tensor) -> torch.Tensor:
        """Embeddings of catalogue items of any shape (-1: padding, read as row 0)."""
        return self.item(self.item_row[items.clamp(min=0)])
