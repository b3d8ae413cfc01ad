"""The recurrent reading of an audio input: its spectrogram as a sequence of frames.

    mels [B, 1, M, T] ──frames──▶ [B, T, M] ──stack k frames──▶ [B, T/k, M·k]
      ──▶ packed by lengths (ceil(length / k)) ──▶ stacked (bi)directional cells
      ──▶ pooled [B, H·dirs] (a label per clip), or per-step states (a ctc transcript)

Stacking neighbouring frames (``stack`` of the audio input) is the cheap way to a lower
frame rate: the recurrent stack runs k times fewer steps, each seeing k frames. The rnn
family (models/rnn.py) builds one :class:`AudioFrames` per audio input and gives it its
recurrent stack (``setup``), so the cells match those of its text inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from layerwise.models.layers import masked_pool


class AudioFrames(nn.Module):
    """One audio input → pooled ``[B, H·dirs]`` (forward) or per-step ``states``."""

    def __init__(self, spec: dict[str, Any], setup: Callable[[nn.Module, int], None]) -> None:
        super().__init__()
        self.stack = int(spec.get("stack", 1))
        self.steps = -(-int(spec["frames"]) // self.stack)  # ceil(frames / stack)
        # set by setup: rnn, dirs, out_features, pooling, attention
        self.rnn: nn.RNNBase
        self.pooling: str
        self.attention: nn.Module | None
        self.dirs: int
        setup(self, int(spec["n_mels"]) * self.stack)

    def _frames(self, x: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Stacked frames ``[B, steps, M·k]`` and the steps of each clip ``[B]``."""
        mels, lengths = x["mels"], x["lengths"]
        b, _, m, t = mels.shape
        f = mels[:, 0].transpose(1, 2)                                  # [B, T, M]
        f = nn.functional.pad(f, (0, 0, 0, self.steps * self.stack - t))
        f = f.reshape(b, self.steps, self.stack * m)                    # [B, T/k, M·k]
        steps = torch.div(lengths + self.stack - 1, self.stack, rounding_mode="floor")
        return f, steps.clamp(1, self.steps)

    def _run(self, x: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, Any]:
        f, steps = self._frames(x)
        packed = pack_padded_sequence(f, steps.cpu(), batch_first=True, enforce_sorted=False)
        out, h_n = self.rnn(packed)
        states, _ = pad_packed_sequence(out, batch_first=True, total_length=self.steps)
        return states, steps, h_n

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        states, steps, h_n = self._run(x)
        if self.pooling == "last":
            h_n = h_n[0] if isinstance(h_n, tuple) else h_n              # LSTM: (h_n, c_n)
            return torch.cat(list(h_n[-self.dirs:]), dim=1)             # [B, H·dirs]
        mask = torch.arange(self.steps, device=states.device)[None, :] < steps[:, None]
        if self.attention is not None:
            return self.attention(states, mask)
        return masked_pool(states, mask, self.pooling)

    def states(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-step states ``[B, steps, H·dirs]`` (0 past a clip's end) and the steps."""
        states, steps, _ = self._run(x)
        return {"states": states, "lengths": steps.to(states.device)}
