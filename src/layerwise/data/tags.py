"""Token classification targets: one tag per token of a text input.

The tags column holds the tags separated by whitespace, one per token of the linked text
input's tokenizer (``word``: words and punctuation; ``char``: characters)::

    text  "The duck swims ."      tokens  the | duck | swims | .
    tags  "DET NOUN VERB PUNCT"   ids     [3, 5, 9, 7, -100, -100, ...]   long [N, T]

A row whose tag count differs from its token count is an error naming the row. Tags past
``max_length`` tokens are dropped with their tokens (truncation keeps the start); padding
and the ``<unk>`` stand-in of an empty text carry ``IGNORE`` (-100), which the loss and
the metrics skip. The tag vocabulary is fitted on the training split; a tag unseen there
is an error naming the row when evaluating.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from layerwise.data import bio
from layerwise.data.encoder import Encoder, is_missing, no_bad_rows, unlinked
from layerwise.data.table import Table
from layerwise.data.text import _WORD, TextEncoder
from layerwise.errors import ConfigError, DataError

IGNORE = -100


class TagsEncoder(Encoder):
    """Space-separated tags → ``long [N, max_length]`` tag ids, ``IGNORE`` elsewhere."""

    kind = "tags"
    IGNORE = IGNORE

    def __init__(self, cfg: Any, *, output: bool = True) -> None:
        super().__init__(cfg)
        self.source: TextEncoder | None = None  # linked by the Schema
        self.vocab: list[str] = []
        self._index: dict[str, int] = {}

    def link(self, inputs: dict[str, Encoder]) -> None:
        src = inputs[self.cfg.input]
        if not isinstance(src, TextEncoder):
            raise ConfigError(f"output {self.name!r} tags the tokens of {self.cfg.input!r}, "
                              f"which is a {src.kind} input, not text")
        if src.cfg.truncate != "head":  # tags align with a text's tokens from its start
            raise DataError(f"output {self.name!r}: tags need the text input "
                            f"{src.name!r} to keep the start of long texts (truncate: head); "
                            f"got truncate: {src.cfg.truncate}")
        self.source = src

    @property
    def size(self) -> int:
        return len(self.vocab)

    def tokens(self, text: Any) -> list[str]:
        """The tokens a text is tagged by (before truncation)."""
        if self.source is None:
            raise unlinked(self, "text input")
        if is_missing(text) and not isinstance(text, str):
            text = self.source.cfg.fill_value
        return self.source._pieces(str(text))

    def _original(self, text: Any) -> list[str]:
        if self.source is None:
            raise unlinked(self, "text input")
        s = text if isinstance(text, str) else str(self.source.cfg.fill_value)
        return list(s) if self.source.cfg.tokenizer == "char" else _WORD.findall(s)

    def parse(self, col: np.ndarray, table: Table) -> tuple[np.ndarray, np.ndarray, list[str]]:
        if self.source is None:
            raise unlinked(self, "text input")
        texts = table.column(self.source.name)
        bad, reasons = no_bad_rows(len(col))
        values = np.empty(len(col), dtype=object)
        for i, (tags, text) in enumerate(zip(col, texts, strict=True)):
            seq = [] if is_missing(tags) and not isinstance(tags, str) else str(tags).split()
            n = len(self.tokens(text))
            if len(seq) != n:
                bad[i] = True
                if not reasons:
                    reasons.append(f"{len(seq)} tags for {n} tokens of {self.source.name!r} "
                                   f"({self.source.cfg.tokenizer} tokenizer); give one tag per "
                                   "token")
            values[i] = seq
        return values, bad, reasons

    def fit(self, values: np.ndarray) -> None:
        self.vocab = sorted({t for seq in values for t in seq})
        if len(self.vocab) < 2:
            raise DataError(f"output {self.name!r} has {len(self.vocab)} distinct tag in the "
                            "training split; tagging needs at least 2")
        self._index = {t: i for i, t in enumerate(self.vocab)}

    def transform(self, values: np.ndarray) -> torch.Tensor:
        if self.source is None:
            raise unlinked(self, "text input")
        t_max = self.source.max_length
        out = torch.full((len(values), t_max), IGNORE, dtype=torch.long)
        for i, seq in enumerate(values):
            ids = []
            for tag in seq[:t_max]:
                j = self._index.get(tag)
                if j is None:
                    raise DataError(f"output {self.name!r}, row {i + 1}: tag {tag!r} was not "
                                    f"seen in training (known: {self.vocab[:20]})")
                ids.append(j)
            if ids:
                out[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    def decode(self, logits: torch.Tensor, texts: np.ndarray) -> list[dict[str, Any]]:
        """Logits ``[N, T, n]`` → per text: its tokens and their most likely tags."""
        if self.source is None:
            raise unlinked(self, "text input")
        best = logits.argmax(-1).tolist()
        prob = logits.float().softmax(-1).amax(-1).tolist()
        out = []
        for i, text in enumerate(texts):
            toks = self.tokens(text)[: self.source.max_length]
            shown = self._original(text)[: len(toks)]  # the text's own case, where it aligns
            toks = shown if len(shown) == len(toks) else toks
            row = {"tokens": toks, "tags": [self.vocab[j] for j in best[i][: len(toks)]],
                   "probabilities": [round(p, 6) for p in prob[i][: len(toks)]]}
            if bio.is_bio(self.vocab):  # entity tags: the spans as written in the text
                row["spans"] = bio.span_texts(*self._offsets(text, len(toks)), row["tags"])
            out.append(row)
        return out

    def _offsets(self, text: Any, n: int) -> tuple[str, list[tuple[int, int]]]:
        """The text and the character range of each of its first ``n`` tokens."""
        if self.source is None:
            raise unlinked(self, "text input")
        s = text if isinstance(text, str) else str(self.source.cfg.fill_value)
        if self.source.cfg.tokenizer == "char":
            return s, [(i, i + 1) for i in range(min(n, len(s)))]
        return s, [m.span() for m in _WORD.finditer(s)][:n]

    def state(self) -> dict[str, Any]:
        return {"vocab": self.vocab, "input": self.cfg.input}

    def load_state(self, state: dict[str, Any]) -> None:
        self.vocab = [str(t) for t in state["vocab"]]
        self._index = {t: i for i, t in enumerate(self.vocab)}

    def reference(self, values: np.ndarray) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for seq in values:
            for t in seq:
                counts[t] = counts.get(t, 0) + 1
        total = sum(counts.values()) or 1
        return {"count": int(len(values)), "tokens": total,
                "frequencies": {k: v / total for k, v in sorted(counts.items())}}
