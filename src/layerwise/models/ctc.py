"""The head of a ``ctc`` output: per-step character scores, CTC loss, character error rate.

    {"states": [B, T, C], "lengths": [B]} ──linear──▶ logits [B, T, 1 + alphabet]

Steps past a clip's end are forced to the blank (logit 0 against -1e4 for every
character), so every row has the same ``T`` steps: batches concatenate, and the CTC loss
over all ``T`` steps equals the loss over the clip's own steps (each padded step emits a
blank with probability 1). Targets are ``{"labels": long [B, L], "lengths": long [B]}``
(data/transcript.py); blank is id 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from layerwise.data.transcript import edit_distance, greedy

_OFF = -1e4  # the logit of every character on a padded step


class CTCHead(nn.Module):
    kind = "ctc"

    def __init__(self, name: str, in_features: int, n: int, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.name, self.loss_weight = name, loss_weight
        self.linear = nn.Linear(in_features, n)

    def forward(self, h: dict[str, torch.Tensor]) -> torch.Tensor:
        states, lengths = h["states"], h["lengths"]
        logits = self.linear(states).float()                             # [B, T, V]
        pad = torch.arange(logits.shape[1], device=logits.device)[None, :] >= lengths[:, None]
        blank = torch.full_like(logits, _OFF)
        blank[..., 0] = 0.0
        return torch.where(pad[..., None], blank, logits)

    def _losses(self, out: torch.Tensor, y: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per row: the negative log-likelihood of its transcript ``[B]``."""
        log_probs = out.float().log_softmax(-1).transpose(0, 1)          # [T, B, V]
        steps = torch.full((out.shape[0],), out.shape[1], dtype=torch.long)
        return F.ctc_loss(log_probs, y["labels"], steps, y["lengths"], blank=0,
                          reduction="none", zero_infinity=True)

    def loss(self, out: torch.Tensor, y: dict[str, torch.Tensor]) -> torch.Tensor:
        # per row divided by its transcript length, then the batch mean (CTCLoss's "mean")
        return (self._losses(out, y) / y["lengths"].clamp(min=1)).mean()

    def row_stats(self, out: torch.Tensor, y: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per row: characters wrong (greedy decoding), reference characters, and the
        loss ``[B, 3]`` — all the metrics need."""
        refs = [r[:n] for r, n in zip(y["labels"].tolist(), y["lengths"].tolist(),
                                      strict=True)]
        edits = [edit_distance(r, p) for r, p in zip(refs, greedy(out), strict=True)]
        return torch.stack([torch.tensor(edits, dtype=torch.float32),
                            y["lengths"].float(), self._losses(out, y).detach()], 1)

    def metrics(self, out: torch.Tensor, y: dict[str, torch.Tensor]) -> dict[str, float]:
        stats = out if out.dim() == 2 else self.row_stats(out, y)
        edits, chars, nll = stats.sum(0).tolist()
        return {"cer": edits / max(chars, 1.0), "nats_per_char": nll / max(chars, 1.0)}
