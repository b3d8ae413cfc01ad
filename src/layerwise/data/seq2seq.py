"""Sequence outputs: target texts for sequence to sequence, with their own tokenizer.

The tokenizer (char, word or BPE, data/text.py) is fitted on the training split's targets
only and saved in the artifact like an input's. Two ids follow the tokenizer's own:
``<bos>`` (``size``) starts every decoder input and ``<eos>`` (``size + 1``) ends every
target. A target becomes one row of ``long [N, max_length + 2]``::

    <bos> t1 t2 ... tn <eos> <pad> ...     (<pad> = 0)

The decoder reads ``row[:-1]`` (teacher forcing) and learns to predict ``row[1:]``. A target
longer than ``max_length`` tokens keeps its start and gets no ``<eos>``: it teaches the
model to go on to the limit, which is where generation stops anyway (``reference.json``
counts such rows). An empty target is ``<bos> <eos>``: the model may learn to say nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from layerwise.data.text import PAD_ID, UNK_ID, TextEncoder


class SequenceEncoder(TextEncoder):
    """Target texts ↔ ``long [N, max_length + 2]`` (``<bos>`` ... ``<eos>``, padded)."""

    kind = "sequence"

    def __init__(self, cfg: Any, *, output: bool = True) -> None:
        super().__init__(cfg)  # the text input's tokenizers, fitted on the targets

    @property
    def bos_id(self) -> int:
        return self.size

    @property
    def eos_id(self) -> int:
        return self.size + 1

    def _ids(self, values: np.ndarray) -> list[list[int]]:
        if self._bpe is not None:
            return [e.ids for e in self._bpe.encode_batch([str(v) for v in values])]
        return [self.encode(str(v)) for v in values]

    def transform(self, values: np.ndarray) -> torch.Tensor:  # type: ignore[override]
        t_max = self.cfg.max_length
        out = torch.full((len(values), t_max + 2), PAD_ID, dtype=torch.long)
        for i, seq in enumerate(self._ids(values)):
            row = [self.bos_id] + seq[:t_max] + ([self.eos_id] if len(seq) <= t_max else [])
            out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        return out

    def strip(self, ids: list[int]) -> list[int]:
        """Token ids up to the first ``<eos>``, without ``<bos>`` and padding."""
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        return [i for i in ids if i not in (PAD_ID, self.bos_id)]

    def decode(self, ids: list[int]) -> str:
        return super().decode(self.strip(list(ids)))

    def describe(self) -> dict[str, Any]:
        return {"vocab_size": self.size + 2, "max_length": self.cfg.max_length,
                "pad_id": PAD_ID, "bos_id": self.bos_id, "eos_id": self.eos_id}

    def reference(self, values: np.ndarray) -> dict[str, Any]:
        ids = self._ids(values)
        tokens = sum(len(s) for s in ids)
        return {"count": int(len(values)), "vocab_size": self.size + 2,
                "mean_tokens": tokens / len(ids) if ids else None,
                "unknown_rate": sum(s.count(UNK_ID) for s in ids) / max(1, tokens),
                "truncated": sum(len(s) > self.cfg.max_length for s in ids)}
