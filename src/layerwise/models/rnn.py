"""Recurrent networks (vanilla RNN, LSTM, GRU) over text and timeseries inputs.

    ids [B, T] ──embedding──▶ [B, T, E] ──dropout──▶ packed sequence (real lengths only)
      ──▶ stacked (bi)directional cells, dropout between layers ──▶ states [B, T, H·dirs]
      ──▶ pooling over time: last | mean | max | attention           ──▶ [B, H·dirs]
    concat over text inputs (+ tabular features) ──▶ dense layers    ──▶ [B, F]

Packing means padding is never read: the last state of a row is the state after its last
real token, and the backward direction starts at that token too. LSTM forget-gate biases
start at 1 (Jozefowicz et al., 2015) so that early in training the cell remembers by
default. Training clips the gradient norm at 1.0 unless ``train.grad_clip`` says otherwise
(set in ``layerwise.api``; recorded in ``metrics.json → defaults``).

A timeseries input (windows ``[B, L, k]``, all of one length: no packing) runs through the
same recurrent stack with the ``k`` channels as its inputs (no embedding); an audio input
runs over its spectrogram's frames (models/audio.py), per step for a ``ctc`` output. With a
``tags`` output the backbone returns per-token states ``[B, T, H·dirs]`` instead of a pooled
vector.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from layerwise.config import RNNConfig
from layerwise.data.text import UNK_ID
from layerwise.models.audio import AudioFrames
from layerwise.models.layers import AttentionPool, SequenceBackbone, dense_stack, masked_pool, trim
from layerwise.models.registry import register_model

_CELLS: dict[str, type[nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}



def _recurrent(module: nn.Module, cfg: RNNConfig, in_size: int) -> None:
    """Give ``module`` its recurrent stack (``rnn``, forget-gate bias 1 for LSTMs) and the
    parts of its pooling over time (``dirs``, ``out_features``, ``pooling``, ``attention``)."""
    module.rnn = _CELLS[cfg.cell](in_size, cfg.hidden, num_layers=cfg.layers,
                                  batch_first=True, bidirectional=cfg.bidirectional,
                                  dropout=cfg.dropout if cfg.layers > 1 else 0.0)
    module.dirs = 2 if cfg.bidirectional else 1
    module.out_features = cfg.hidden * module.dirs
    module.pooling = cfg.pooling
    module.attention = AttentionPool(module.out_features) if cfg.pooling == "attention" \
        else None
    if cfg.cell == "lstm":
        _forget_bias_one(module.rnn, cfg.hidden)

class SequenceEncoder(nn.Module):
    """One text input: embedding → recurrent stack → pooled vector ``[B, H·dirs]``."""

    def __init__(self, cfg: RNNConfig, vocab_size: int, pad_id: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, cfg.embedding_dim, padding_idx=pad_id)
        self.drop = nn.Dropout(cfg.dropout)
        self.word_dropout = cfg.word_dropout
        self.cell = cfg.cell
        _recurrent(self, cfg, cfg.embedding_dim)

    def forward(self, text: dict[str, torch.Tensor]) -> torch.Tensor:
        ids, lengths, mask = trim(text)                       # [B, T], [B], [B, T]
        x = self.drop(self.embedding(self._words(ids, mask)))  # [B, T, E]
        if torch.compiler.is_exporting():  # packing does not export: the same, unpacked
            states, last = unpacked(self.rnn, x, lengths)
            if self.pooling == "last":
                return last
            return self.attention(states, mask) if self.attention is not None \
                else masked_pool(states, mask, self.pooling)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, h_n = self.rnn(packed)
        if self.pooling == "last":
            h_n = h_n[0] if isinstance(h_n, tuple) else h_n   # LSTM: (h_n, c_n)
            # h_n: [layers·dirs, B, H]; the top layer's directions are the last `dirs` rows
            return torch.cat(list(h_n[-self.dirs:]), dim=1)   # [B, H·dirs]
        states, _ = pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])
        if self.attention is not None:
            return self.attention(states, mask)
        return masked_pool(states, mask, self.pooling)         # [B, H·dirs]

    def _words(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Word dropout while training: real tokens become ``<unk>`` at random, so the model
        learns to read a message around words it has never seen (Iyyer et al., 2015)."""
        if not self.training or not self.word_dropout:
            return ids
        drop = (torch.rand(ids.shape, device=ids.device) < self.word_dropout) & mask
        return ids.masked_fill(drop, UNK_ID)

    def pooled_and_states(self, text: dict[str, torch.Tensor]
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """What ``forward`` and ``states`` return, from one run of the stack (a joint model:
        heads over the pooled vector and a tags head over the states)."""
        ids, lengths, mask = trim(text)
        x = self.drop(self.embedding(self._words(ids, mask)))
        if torch.compiler.is_exporting():
            states, last = unpacked(self.rnn, x, lengths)
        else:
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True,
                                          enforce_sorted=False)
            out, h_n = self.rnn(packed)
            states, _ = pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])
            h_n = h_n[0] if isinstance(h_n, tuple) else h_n
            last = torch.cat(list(h_n[-self.dirs:]), dim=1)   # [B, H·dirs]
        if self.pooling == "last":
            pooled = last
        else:
            pooled = self.attention(states, mask) if self.attention is not None \
                else masked_pool(states, mask, self.pooling)
        return pooled, self.drop(states)

    def states(self, text: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-token states ``[B, T, H·dirs]`` (T: the batch's longest text; 0 on padding)."""
        ids, lengths, mask = trim(text)
        x = self.drop(self.embedding(self._words(ids, mask)))
        if torch.compiler.is_exporting():
            return self.drop(unpacked(self.rnn, x, lengths)[0])
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        states, _ = pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])
        return self.drop(states)


def unpacked(rnn: nn.RNNBase, x: torch.Tensor, lengths: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """What the packed run gives, without packing (which graph export cannot trace): states
    ``[B, T, H·dirs]`` (0 on padding) and the top layer's last states ``[B, H·dirs]``.

    Each direction of each layer runs on its own over the padded batch; the reverse one
    over each row's tokens reversed in place (padding stays at the end), so it starts at
    the row's last token as the packed run does. Eval mode only (no dropout between
    layers)."""
    b, t = x.shape[:2]
    pos = torch.arange(t, device=x.device)[None, :]                     # [1, T]
    valid = pos < lengths[:, None]                                      # [B, T]
    rev = torch.where(valid, lengths[:, None] - 1 - pos, pos)           # [B, T]
    last_idx = (lengths - 1).clamp(min=0)[:, None, None]                # [B, 1, 1]
    fn = {"LSTM": torch.lstm, "GRU": torch.gru, "RNN_TANH": torch.rnn_tanh,
          "RNN_RELU": torch.rnn_relu}[rnn.mode]
    dirs = 2 if rnn.bidirectional else 1
    lasts: list[torch.Tensor] = []
    for layer in range(rnn.num_layers):
        outs, lasts = [], []
        for d in range(dirs):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            params = [getattr(rnn, f"{k}{sfx}") for k in ("weight_ih", "weight_hh",
                                                            "bias_ih", "bias_hh")
                      if hasattr(rnn, f"{k}{sfx}")]
            h0 = x.new_zeros(1, b, rnn.hidden_size)
            hx: Any = (h0, h0) if rnn.mode == "LSTM" else h0
            idx = rev[..., None].expand(-1, -1, x.shape[2])
            inp = x.gather(1, idx) if d else x
            out = fn(inp, hx, params, rnn.bias, 1, 0.0, False, False, True)[0]  # [B, T, H]
            lasts.append(out.gather(1, last_idx.expand(-1, 1, out.shape[2]))[:, 0])
            if d:
                out = out.gather(1, rev[..., None].expand(-1, -1, out.shape[2]))
            outs.append(out)
        x = torch.cat(outs, dim=2) * valid[..., None].to(x.dtype)      # [B, T, H·dirs]
    return x, torch.cat(lasts, dim=1)


def _forget_bias_one(rnn: nn.RNNBase, hidden: int) -> None:
    # PyTorch orders LSTM gates (input, forget, cell, output); the two bias vectors add
    # up, so the forget slice is 1 in bias_ih and 0 in bias_hh
    with torch.no_grad():
        for name, p in rnn.named_parameters():
            if name.startswith("bias_"):
                p.zero_()
                if name.startswith("bias_ih"):
                    p[hidden: 2 * hidden] = 1.0


class WindowEncoder(nn.Module):
    """One timeseries input: windows ``[B, L, k]`` → recurrent stack → ``[B, H·dirs]``."""

    def __init__(self, cfg: RNNConfig, channels: int) -> None:
        super().__init__()
        _recurrent(self, cfg, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states, h_n = self.rnn(x)                              # [B, L, H·dirs]
        if self.pooling == "last":
            h_n = h_n[0] if isinstance(h_n, tuple) else h_n
            return torch.cat(list(h_n[-self.dirs:]), dim=1)    # [B, H·dirs]
        mask = torch.ones(states.shape[:2], dtype=torch.bool, device=states.device)
        if self.attention is not None:
            return self.attention(states, mask)
        return masked_pool(states, mask, self.pooling)


@register_model("rnn")
class RNN(SequenceBackbone):
    """A recurrent encoder per text (and timeseries) input; tabular inputs join the dense
    head (the inputs are wired by :class:`SequenceBackbone`).

    What it reads and predicts is declared by :class:`RNNConfig` (build_model checks it)."""

    config_class = RNNConfig

    def __init__(self, cfg: RNNConfig, desc: dict[str, Any]) -> None:
        super().__init__()
        width = self._build_inputs(
            "rnn", desc, lambda t: SequenceEncoder(cfg, t["vocab_size"], t["pad_id"]),
            lambda s: AudioFrames(s, lambda m, n: _recurrent(m, cfg, n)) if "n_mels" in s
            else WindowEncoder(cfg, s["channels"]))
        # a ctc output transcribes the (only) audio input: per-step states, no pooling
        self.ctc = any(k == "ctc" for k, _ in desc.get("outputs", {}).values())
        if self.per_token or self.ctc:
            self.dense, self.out_features = nn.Identity(), width
            return
        self.drop = nn.Dropout(cfg.dropout)
        self.dense, self.out_features = dense_stack(width, cfg.dense, cfg.activation,
                                                    cfg.dropout)

    @classmethod
    def from_config(cls, cfg: RNNConfig, desc: dict[str, Any]) -> RNN:
        return cls(cfg, desc)

    def forward(self, inputs: dict[str, Any]) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.ctc:  # {"states": [B, T, H·dirs], "lengths": [B]} for a ctc head
            name = self.series_names[0]
            return self.windows[name].states(inputs[name])
        if self.per_token:  # [B, T, H·dirs] for a tags head
            return self.encoders[self.tagged].states(inputs[self.tagged])
        if self.joint:  # ([B, F] for the other heads, [B, T, H·dirs] for the tags head)
            pooled, states = self.joint_features(inputs)
            return self.dense(self.drop(pooled)), states
        return self.dense(self.drop(self.features(inputs)))      # [B, F_in] → [B, F]
