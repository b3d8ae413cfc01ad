"""CTC targets: the transcript of an audio input as characters, and their decoding.

    transcript "314"   ids [4, 2, 5]   (0 is the blank; the alphabet is fitted on train)
    targets {"labels": long [N, L_max] (0 past each end), "lengths": long [N]}

The model emits per frame a distribution over ``blank + alphabet``; a transcript is read
off by collapsing repeats and dropping blanks, along the best path (:func:`greedy`) or by
prefix beam search over the summed probability of every path of a prefix
(:func:`beam_search`, Hannun et al. 2014, without a language model). :func:`cer` is the
character error rate: edit distance over reference length, summed over rows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from layerwise.data.encoder import Encoder, is_missing, no_bad_rows
from layerwise.data.table import Table
from layerwise.errors import ConfigError, DataError

BLANK = 0


def collapse(ids: list[int]) -> list[int]:
    """A frame path → its labels: repeats merged, then blanks dropped (``a a _ a`` → a a)."""
    out: list[int] = []
    prev = BLANK
    for i in ids:
        if i != prev and i != BLANK:
            out.append(i)
        prev = i
    return out


def greedy(logits: torch.Tensor) -> list[list[int]]:
    """The best path of each row of ``[N, T, V]`` scores, collapsed."""
    return [collapse(row) for row in logits.argmax(-1).tolist()]


def _logsumexp(a: float, b: float) -> float:
    if a == -np.inf:
        return b
    if b == -np.inf:
        return a
    m = max(a, b)
    return m + float(np.log1p(np.exp(-abs(a - b))))


def beam_search(log_probs: np.ndarray, beams: int = 8, prune: int = 8,
                cutoff: float = -12.0) -> list[int]:
    """CTC prefix beam search over one row's log-probabilities ``[T, V]``.

    Each prefix keeps two log-probabilities: of its paths ending in a blank and of those
    ending in its last label (so ``a _ a`` and ``a a`` stay apart). Per frame only the
    ``prune`` likeliest labels extend a prefix, and of those only the ones more likely
    than ``exp(cutoff)`` (the likeliest always). Returns the best prefix's labels."""
    neg = -np.inf
    kept: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, neg)}  # (blank, label)
    for frame in log_probs:
        top = np.argsort(frame)[::-1][:prune]
        top = top[(frame[top] > cutoff) | (np.arange(len(top)) == 0)]
        nxt: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [neg, neg])
        for prefix, (pb, pl) in kept.items():
            total = _logsumexp(pb, pl)
            for c in top.tolist():
                p = float(frame[c])
                if c == BLANK:
                    e = nxt[prefix]
                    e[0] = _logsumexp(e[0], total + p)
                    continue
                last = prefix[-1] if prefix else None
                ext = nxt[prefix + (c,)]
                # a repeat extends only from a blank-ending path; otherwise it stays put
                ext[1] = _logsumexp(ext[1], (pb if c == last else total) + p)
                if c == last:
                    same = nxt[prefix]
                    same[1] = _logsumexp(same[1], pl + p)
        ranked = sorted(nxt.items(), key=lambda kv: -_logsumexp(*kv[1]))[:beams]
        kept = {k: (v[0], v[1]) for k, v in ranked}
    return list(max(kept.items(), key=lambda kv: _logsumexp(*kv[1]))[0])


def edit_distance(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Levenshtein distance: insertions, deletions and substitutions turning a into b
    (strings, or lists of ids)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def cer(predicted: list[str], reference: list[str]) -> float:
    """Character error rate: Σ edit distances / Σ reference lengths (NaN for no characters)."""
    edits = sum(edit_distance(r, p) for p, r in zip(predicted, reference, strict=True))
    chars = sum(len(r) for r in reference)
    return edits / chars if chars else float("nan")


class CTCEncoder(Encoder):
    """Transcripts ↔ character ids (``0`` = blank); links to the audio input it reads."""

    kind = "ctc"

    def __init__(self, cfg: Any, *, output: bool = True) -> None:
        super().__init__(cfg)
        self.alphabet: list[str] = []
        self._index: dict[str, int] = {}
        self.frames: int | None = None  # steps the model emits: from the linked input

    def link(self, inputs: dict[str, Encoder]) -> None:
        src = inputs.get(self.cfg.input)
        if src is None or src.kind != "audio":
            kinds = {n: e.kind for n, e in inputs.items()}
            raise ConfigError(f"output {self.name!r}: input must name an audio input; got "
                              f"{self.cfg.input!r} (inputs: {kinds})")
        self.source = src

    @property
    def size(self) -> int:
        return len(self.alphabet) + 1

    def _text(self, v: Any) -> str:
        s = str(v).strip()
        return s.lower() if self.cfg.lowercase else s

    def parse(self, col: np.ndarray, table: Table) -> tuple[np.ndarray, np.ndarray, list[str]]:
        bad, reasons = no_bad_rows(len(col))
        values = np.empty(len(col), dtype=object)
        for i, v in enumerate(col):
            if is_missing(v) and not (isinstance(v, str) and v.strip()):
                bad[i] = True
                if not reasons:
                    reasons.append("the transcript is empty")
                v = ""
            values[i] = self._text(v)
        return values, bad, reasons

    def fit(self, values: np.ndarray) -> None:
        self.alphabet = sorted({c for s in values for c in s})
        if not self.alphabet:
            raise DataError(f"output {self.name!r}: the training transcripts hold no "
                            "characters")
        self._index = {c: i + 1 for i, c in enumerate(self.alphabet)}

    def encode(self, text: str, row: int) -> list[int]:
        ids = []
        for c in text:
            j = self._index.get(c)
            if j is None:
                raise DataError(f"output {self.name!r}, row {row + 1}: character {c!r} was "
                                f"not seen in training (alphabet: {''.join(self.alphabet)!r})")
            ids.append(j)
        return ids

    def transform(self, values: np.ndarray) -> dict[str, torch.Tensor]:  # type: ignore[override]
        rows = [self.encode(s, i) for i, s in enumerate(values)]
        width = max([len(r) for r in rows] + [1])
        labels = torch.zeros(len(rows), width, dtype=torch.long)
        for i, r in enumerate(rows):
            labels[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        return {"labels": labels, "lengths": torch.tensor([len(r) for r in rows])}

    def text(self, ids: list[int]) -> str:
        return "".join(self.alphabet[i - 1] for i in ids if 0 < i <= len(self.alphabet))

    def references(self, y: dict[str, torch.Tensor]) -> list[str]:
        """The transcripts of encoded targets."""
        return [self.text(r[:n]) for r, n in zip(y["labels"].tolist(), y["lengths"].tolist(),
                                                  strict=True)]

    def decode(self, logits: torch.Tensor, how: str | None = None,
               beams: int | None = None) -> list[str]:
        """Transcripts of scores ``[N, T, V]``: greedy or beam (the config's by default)."""
        if not self.alphabet:
            raise DataError(f"output {self.name!r} is not fitted yet: it has no alphabet")
        how = how or self.cfg.decode
        if how == "greedy":
            return [self.text(r) for r in greedy(logits)]
        lp = logits.float().log_softmax(-1).numpy()
        width = beams or self.cfg.beams
        return [self.text(beam_search(row, width, prune=min(width, lp.shape[-1])))
                for row in lp]

    def state(self) -> dict[str, Any]:
        return {"alphabet": self.alphabet, "input": self.cfg.input}

    def load_state(self, state: dict[str, Any]) -> None:
        self.alphabet = [str(c) for c in state["alphabet"]]
        self._index = {c: i + 1 for i, c in enumerate(self.alphabet)}

    def reference(self, values: np.ndarray) -> dict[str, Any]:
        lengths = [len(s) for s in values]
        return {"count": int(len(values)),
                "mean_chars": float(np.mean(lengths)) if lengths else None}
