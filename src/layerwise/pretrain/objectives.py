"""The pre-training objectives: what an encoder learns from rows without labels.

- **masked tokens** (BERT): 15% of a text's real tokens are chosen; of those 80% become the
  mask token, 10% a random token, 10% stay; the encoder's per-token states predict the
  chosen tokens through a small head tied to the token embedding. The tokenizer has no
  token of its own for the mask: ``<unk>`` plays it (a rare word and a hidden word are both
  "a word to infer from context"), so the vocabulary, and the ids a fine-tuning run reuses,
  stay exactly the tokenizer's.
- **contrastive** (SimCLR): two augmented views of every image (the input's own
  ``augment`` settings, drawn twice) pass the backbone and a projection head; NT-Xent pulls
  the two views of one image together and pushes the other images of the batch away. The
  projection head is dropped after pre-training.

Both run through the Trainer as ordinary models (``forward`` + ``loss``). Their randomness
(masks, views) comes from an :class:`~layerwise.data.augment.Augmenter` subclass whose
generator the Trainer saves in every checkpoint, so a resumed pre-training draws the same
masks and views as an uninterrupted one.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from layerwise.data.augment import Augmenter
from layerwise.data.text import PAD_ID, UNK_ID

VIEW = "__view2__"      # the second augmented view of the image input
MASKED = "__masked__"   # masked-token labels [B, T]: the original id, IGNORE elsewhere
IGNORE = -100
MASK_ID = UNK_ID
FIRST_WORD = 2          # ids below are <pad> and <unk>: never a random replacement


# ---------------------------------------------------------------- masked tokens


def mask_tokens(ids: torch.Tensor, lengths: torch.Tensor, rate: float, vocab_size: int,
                g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(masked ids, labels) for ``ids [B, T]`` with ``lengths [B]`` real tokens per row:
    each real token is chosen with probability ``rate``; a chosen one becomes the mask
    (80%), a random word (10%) or stays (10%); labels hold the original id where chosen
    and ``IGNORE`` elsewhere (padding is never chosen)."""
    shape = ids.shape
    real = torch.arange(shape[1])[None, :] < lengths.cpu()[:, None]
    chosen = (torch.rand(shape, generator=g) < rate) & real
    how = torch.rand(shape, generator=g)
    random_ids = torch.randint(FIRST_WORD, max(FIRST_WORD + 1, vocab_size), shape, generator=g)
    cpu = ids.cpu()
    out = torch.where(chosen & (how < 0.8), torch.full_like(cpu, MASK_ID), cpu)
    out = torch.where(chosen & (how >= 0.8) & (how < 0.9), random_ids, out)
    labels = torch.where(chosen, cpu, torch.full_like(cpu, IGNORE))
    return out.to(ids.device), labels.to(ids.device)


class MaskTokens(Augmenter):
    """Masks the training batches' tokens of one text input (labels under ``MASKED``)."""

    def __init__(self, name: str, rate: float, vocab_size: int, seed: int) -> None:
        super().__init__({}, seed)
        self.name, self.rate, self.vocab_size = name, rate, vocab_size

    def __bool__(self) -> bool:
        return True

    def __call__(self, inputs: dict[str, Any]) -> dict[str, Any]:
        text = inputs[self.name]
        ids, labels = mask_tokens(text["ids"], text["lengths"], self.rate, self.vocab_size,
                                  self.generator)
        return {**inputs, self.name: {**text, "ids": ids}, MASKED: labels}


class MaskedTokenModel(nn.Module):
    """A transformer backbone's text encoder + a prediction head tied to its embedding."""

    def __init__(self, backbone: nn.Module, text_name: str) -> None:
        super().__init__()
        self.backbone, self.text_name = backbone, text_name
        enc = backbone.encoders[text_name]
        d, vocab = enc.out_features, enc.tokens.num_embeddings
        self.head = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.LayerNorm(d))
        self.bias = nn.Parameter(torch.zeros(vocab))

    def forward(self, inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
        text = inputs[self.text_name]
        enc = self.backbone.encoders[self.text_name]
        h = enc.states(text)                                    # [B, T(+1), C]
        if enc.cls is not None:                                 # the pooling token
            h = h[:, 1:]
        t = h.shape[1]
        labels = inputs.get(MASKED)
        if labels is None:  # an unmasked batch (the precision probe): predict every token
            ids = text["ids"][:, :t]
            labels = torch.where(ids == PAD_ID, torch.full_like(ids, IGNORE), ids)
        labels = labels[:, :t]
        asked = labels != IGNORE                                # [B, T]
        # only the chosen positions are scored: [M, V] logits instead of [B, T, V]
        logits = self.head(h[asked]) @ enc.tokens.weight.T + self.bias
        return {"logits": logits, "labels": labels[asked]}      # [M, V], [M]

    def loss(self, outputs: dict[str, torch.Tensor], targets: Any) -> torch.Tensor:
        logits, labels = outputs["logits"], outputs["labels"]
        if not len(labels):  # a batch with nothing chosen: no signal
            return self.bias.sum() * 0.0
        return F.cross_entropy(logits.float(), labels)


# ---------------------------------------------------------------- contrastive


def nt_xent(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent (SimCLR): ``z [2B, P]``, rows ``i`` and ``i + B`` the two views of one image.
    Each row's positive is its other view; the other ``2B - 2`` rows are its negatives;
    similarities are cosines divided by ``temperature``; the mean cross-entropy over all
    ``2B`` rows."""
    z = F.normalize(z.float(), dim=1)
    n = z.shape[0]
    sim = (z @ z.T) / temperature
    sim = sim.masked_fill(torch.eye(n, dtype=torch.bool, device=z.device), float("-inf"))
    positive = (torch.arange(n, device=z.device) + n // 2) % n
    return F.cross_entropy(sim, positive)


class TwoViews(Augmenter):
    """Two independently augmented views of one image input: the first in its place, the
    second under ``VIEW``."""

    def __init__(self, name: str, settings: Any, seed: int) -> None:
        super().__init__({name: settings}, seed)
        self.name = name

    def __bool__(self) -> bool:
        return True

    def __call__(self, inputs: dict[str, Any]) -> dict[str, Any]:
        first, second = super().__call__(inputs), super().__call__(inputs)
        return {**first, VIEW: second[self.name]}


class ContrastiveModel(nn.Module):
    """A backbone + projection head (Linear → ReLU → Linear), trained by NT-Xent."""

    def __init__(self, backbone: nn.Module, image_name: str, projection_dim: int,
                 temperature: float) -> None:
        super().__init__()
        self.backbone, self.image_name, self.temperature = backbone, image_name, temperature
        f = backbone.out_features
        self.projection = nn.Sequential(nn.Linear(f, f), nn.ReLU(), nn.Linear(f, projection_dim))

    def forward(self, inputs: dict[str, Any]) -> torch.Tensor:
        x = inputs[self.image_name]
        second = inputs.get(VIEW, x)  # no views (the precision probe): the image twice
        both = {k: torch.cat([v, v]) for k, v in inputs.items()
                if isinstance(v, torch.Tensor) and k not in (self.image_name, VIEW)}
        both[self.image_name] = torch.cat([x, second])
        return self.projection(self.backbone(both))            # [2B, P]

    def loss(self, outputs: torch.Tensor, targets: Any) -> torch.Tensor:
        return nt_xent(outputs, self.temperature)
