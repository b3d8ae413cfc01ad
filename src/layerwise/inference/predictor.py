"""Predictor: load an artifact, turn raw rows into tensors, run the model, decode outputs.

    >>> import layerwise as lw                                   # doctest: +SKIP
    >>> m = lw.load("runs/wine/model")                           # doctest: +SKIP
    >>> m.predict([{"alcohol": 13.2, ...}])                      # doctest: +SKIP
    [{'target': 'class_0', 'target_probability': 0.97, 'target_probabilities': {...}}]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from layerwise import artifact as art
from layerwise.data import sources
from layerwise.data.batching import TensorData, inference_rows, take
from layerwise.data.build import encode_rows
from layerwise.data.features import BinaryEncoder, CategoryEncoder, NumericEncoder
from layerwise.data.table import Table
from layerwise.data.text import UNK_ID, NextTokenEncoder
from layerwise.errors import ConfigError, DataError
from layerwise.inference import abstain, backends, calibrated, generative, seq2seq, sequences

Columns = dict[str, list[Any]]  # decoded values: a column name → one value per row


class Predictor:
    """A loaded model that accepts raw rows and returns decoded outputs.

    It keeps nothing between calls: each ``predict`` encodes, runs and decodes its own rows
    (what decoding needs is passed to ``decode``), so calls may interleave, e.g. from the
    threads of a server.
    """

    def __init__(self, artifact: art.Artifact, backend: str | None = None) -> None:
        self.artifact = artifact
        self.model = artifact.model.eval()
        self.schema = artifact.schema
        self.config = artifact.config
        self.use_backend(backend or backends.default_backend(artifact.meta))

    def use_backend(self, name: str) -> Predictor:
        """Run ``forward`` with backend ``name`` (see inference/backends.py: eager,
        compiled, bf16, onnxruntime, onnxruntime-int8); returns the predictor."""
        self._runner = backends.make(name, self.model, self.artifact.path, self.meta)
        self.backend = name
        self._step: Any = None  # a language model's decoding step, built on first use
        return self

    def generation_step(self) -> Any:
        """How a language model's decoding step runs on this backend (built once, on
        first use: inference/lm_steps.py)."""
        if self._step is None:
            from layerwise.inference.lm_steps import stepper

            self._step = stepper(backends.resolved(self.backend, self.meta),
                                 self.model.backbone, self.artifact.path)
        return self._step

    @classmethod
    def load(cls, path: str | Path, backend: str | None = None) -> Predictor:
        """``backend``: by name; default: the one recorded for this machine, else eager."""
        return cls(art.load(path), backend)

    @property
    def meta(self) -> dict[str, Any]:
        return self.artifact.meta

    # -- rows → table ---------------------------------------------------------------------
    def to_table(self, rows: Any) -> Table:
        """Accept dicts, a dict of lists, a DataFrame, a file path, image paths or arrays,
        or a list of strings for a model whose only input is text."""
        images = [e.name for e in self.schema.images]
        if isinstance(rows, Table):
            return rows
        if isinstance(rows, str | Path):
            p = Path(rows)
            if images and p.suffix.lower() in sources.IMAGE_SUFFIXES:
                return Table({images[0]: np.array([str(p)], dtype=object)}, str(p))
            if self.schema.audio and p.suffix.lower() in sources.AUDIO_SUFFIXES:
                return Table({self.schema.audio[0].name: np.array([str(p)], dtype=object)},
                             str(p))
            # a file of new rows is read as the training data was (data.encoding)
            return sources.read(p, encoding=getattr(self.config.data, "encoding", "utf-8"))
        if isinstance(rows, np.ndarray) and len(images) == 1 and not self.schema.numeric:
            # an array of images; a category column it lacks is named when encoding (a
            # generative model's role columns are filled in: inference/generative.py)
            arr = rows if rows.ndim >= 3 else rows[None]
            return Table({images[0]: arr}, "array")
        if hasattr(rows, "to_dict") and hasattr(rows, "columns"):  # pandas DataFrame
            return Table({str(c): rows[c].to_numpy() for c in rows.columns}, "DataFrame")
        if isinstance(rows, dict):
            if all(isinstance(v, list | tuple | np.ndarray) for v in rows.values()):
                return Table({k: _column(v) for k, v in rows.items()}, "input")
            rows = [rows]
        if isinstance(rows, list | tuple):
            if not rows:
                raise DataError("no rows to predict")
            if all(isinstance(r, str | Path) for r in rows) and len(images) == 1:
                return Table({images[0]: np.array([str(r) for r in rows], dtype=object)},
                             "input")
            if all(isinstance(r, str | Path) and Path(r).suffix.lower() in
                   sources.AUDIO_SUFFIXES for r in rows) and len(self.schema.audio) == 1:
                return Table({self.schema.audio[0].name: np.array([str(r) for r in rows],
                                                                  dtype=object)}, "input")
            texts = [e.name for e in self.schema.texts]
            if all(isinstance(r, str) for r in rows) and texts == [
                    e.name for e in self.schema.inputs]:  # raw strings for a text-only model
                return Table({texts[0]: np.array(list(rows), dtype=object)}, "input")
            if all(isinstance(r, dict) for r in rows):
                keys = list(dict.fromkeys(k for r in rows for k in r))
                return Table({k: _column([r.get(k) for r in rows]) for k in keys}, "input")
        raise DataError(f"cannot predict on {type(rows).__name__}; give dicts, a dict of "
                        "lists, a DataFrame, a file path, or image paths/arrays")

    # -- running -------------------------------------------------------------------------
    @torch.inference_mode()
    def forward(self, data: TensorData, batch_size: int = 1024) -> dict[str, torch.Tensor]:
        n = len(data)
        outs: list[dict[str, torch.Tensor]] = []
        if n > 256:  # large inputs: batches that fit in memory (a server's stay as they come)
            batch_size = inference_rows(self._runner, data.inputs, batch_size)
        for start in range(0, n, batch_size):
            idx = torch.arange(start, min(n, start + batch_size))
            outs.append(self._runner(take(data.inputs, idx)))
        return {k: torch.cat([o[k] for o in outs]).float() for k in outs[0]}

    def predict(self, rows: Any, batch_size: int = 1024) -> list[dict[str, Any]]:
        """Decoded predictions, one dict per row."""
        if generative.is_generative(self):  # anomaly scores (inference/generative.py)
            return generative.predict(self, rows, batch_size)
        table = self.to_table(rows)
        if self.schema.series:  # what follows the table's history (inference/sequences.py)
            return sequences.forecast(self, table)
        data, table = encode_rows(self.schema, table, targets=False)
        if sequences.tags_output(self.schema) is not None:  # a tag per token of each text
            rows = sequences.tag(self, data, table, batch_size)
            return abstain.route(rows, self.schema.outputs, self.meta)  # hand-off, if fitted
        if seq2seq.sequence_output(self.schema) is not None:  # generated text per row
            return seq2seq.predict(self, data, batch_size=min(batch_size, 256))
        if any(isinstance(e, NextTokenEncoder) for e in self.schema.outputs):
            batch_size = min(batch_size, 64)  # logits [B, T, V] per batch
        rows = self.decode(self.forward(data, batch_size), data.inputs)
        return abstain.route(rows, self.schema.outputs, self.meta)  # hand-off, if fitted

    def generate(self, prompt: str = "", max_tokens: int = 200, *,
                 temperature: float | None = None,
                 top_k: int | None = None, top_p: float | None = None, greedy: bool = False,
                 beams: int = 1, seed: int | None = None, use_cache: bool = True) -> str:
        """Continue ``prompt`` with a language model (a ``next_token`` output).

        Sampling by default (``temperature`` 1, ``top_k``, ``top_p``); ``greedy=True`` takes
        the most likely token; ``beams > 1`` runs beam search. An empty prompt starts at a
        newline (a fresh line of text). Returns the prompt and its continuation.

        A sequence-to-sequence model (a ``sequence`` output) reads ``prompt`` as its source
        text and returns the output alone (at most ``max_tokens`` tokens): greedy unless
        ``temperature`` > 0 samples or ``beams > 1`` runs beam search.
        """
        if seq2seq.sequence_output(self.schema) is not None:  # the prompt is the source text
            if beams < 1:
                raise ConfigError(f"generate expects beams >= 1; got {beams}")
            return seq2seq.generate(self, prompt, max_tokens,
                                    temperature=None if greedy else temperature, top_k=top_k,
                                    top_p=top_p, beams=beams, seed=seed, use_cache=use_cache)
        temperature = 1.0 if temperature is None else temperature
        text, ids, decoder = self._language_model(prompt, max_tokens, beams, top_p)
        if beams > 1:
            new = decoder.beam(ids, max_tokens, beams)
        else:
            new = decoder.sample(ids, max_tokens, temperature=temperature, top_k=top_k,
                                 top_p=top_p, greedy=greedy, use_cache=use_cache, seed=seed)
        sep = "" if text.cfg.tokenizer != "word" else " "
        return prompt + (sep if prompt and new else "") + text.decode(new)

    def generate_stream(self, prompt: str = "", max_tokens: int = 200, *,
                        temperature: float | None = None, top_k: int | None = None,
                        top_p: float | None = None, greedy: bool = False,
                        seed: int | None = None) -> Iterator[str]:
        """:meth:`generate`'s continuation of ``prompt`` (language models, sampling or
        greedy), piece by piece as each token is chosen: the pieces join to the text
        ``generate`` returns after the prompt. A server streams them."""
        text, ids, decoder = self._language_model(prompt, max_tokens, 1, top_p)
        sep = "" if text.cfg.tokenizer != "word" else " "
        new: list[int] = []
        said = ""
        for nxt in decoder.stream(ids, max_tokens, temperature=1.0 if temperature is None
                                  else temperature, top_k=top_k, top_p=top_p,
                                  greedy=greedy, seed=seed):
            new.append(nxt)
            whole = (sep if prompt else "") + text.decode(new)  # decoded whole: exact
            yield whole[len(said):]
            said = whole

    def _language_model(self, prompt: str, max_tokens: int, beams: int,
                        top_p: float | None) -> tuple[Any, list[int], Any]:
        """The text encoder, the prompt's ids and a decoder, after the checks."""
        from layerwise.models.transformer import Decoder

        if not any(isinstance(e, NextTokenEncoder) for e in self.schema.outputs):
            raise ConfigError("generate needs a language model (an output of type "
                              "next_token); this model predicts "
                              f"{[e.kind for e in self.schema.outputs]}")
        if max_tokens < 0 or beams < 1 or (top_p is not None and not 0 < top_p <= 1):
            raise ConfigError(f"generate expects max_tokens >= 0, beams >= 1 and 0 < top_p "
                              f"<= 1; got {max_tokens}, {beams}, {top_p}")
        text = self.schema.texts[0]
        ids = text.encode(prompt or "\n") or [UNK_ID]
        return text, ids, Decoder(self.model.backbone,  # type: ignore[arg-type]
                                  step=self.generation_step())

    def embed(self, rows: Any, batch_size: int = 1024) -> np.ndarray:
        """Latent vectors ``[N, d]`` of rows (autoencoder code, VAE posterior mean)."""
        return generative.embed(self, rows, batch_size)

    def sample(self, n: int, *, label: Any = None, steps: int | None = None,
               seed: int | None = None) -> np.ndarray:
        """``n`` new samples of a vae, gan or diffusion model (images ``[n, C, H, W]`` in
        [0, 1]); ``label``: a class value of a class-conditional model, as in the data."""
        return generative.sample(self, n, label=label, steps=steps, seed=seed)

    def classes(self) -> list[str]:
        """The classes a class-conditional model can be asked for."""
        return generative.classes(self)

    def decode(self, outputs: dict[str, torch.Tensor],
               inputs: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """One dict per row from the model's ``outputs``, by each output's decoder in
        ``DECODERS``; ``inputs``, the encoded rows, are needed by a ``next_token`` output
        (it reads the token after each text's end)."""
        cols: Columns = {}
        outputs = calibrated.scale(self.meta, outputs)  # stored temperatures (calibrate)
        for enc in self.schema.outputs:
            if enc.kind == "tags" and enc.name not in outputs:  # decoded with the texts
                continue
            decoder = DECODERS.get(enc.kind)
            if decoder is None:
                raise ConfigError(f"output {enc.name!r} of type {enc.kind!r} has no row "
                                  f"decoder; decodable types: {', '.join(sorted(DECODERS))}")
            cols.update(decoder(enc, outputs[enc.name], inputs or {}))
            cols.update(calibrated.conformal_columns(enc, outputs[enc.name], cols, self.meta))
        n = len(next(iter(cols.values())))
        return [{k: v[i] for k, v in cols.items()} for i in range(n)]


# -------------------------------------------------------------------- decoders per output kind
# Each takes an output's encoder, its model output and the encoded inputs, and returns its
# columns of decoded values (one entry per row).


def _category(enc: CategoryEncoder, out: torch.Tensor, inputs: Mapping[str, Any]) -> Columns:
    prob = out.softmax(dim=1).numpy()  # [N, classes]
    best = prob.argmax(1)
    return {
        enc.name: [enc.vocab[i] for i in best],
        f"{enc.name}_probability": [float(p[i]) for p, i in zip(prob, best, strict=True)],
        f"{enc.name}_probabilities": [
            {str(v): round(float(x), 6) for v, x in zip(enc.vocab, p, strict=True)}
            for p in prob]}


def _binary(enc: BinaryEncoder, out: torch.Tensor, inputs: Mapping[str, Any]) -> Columns:
    p = out.sigmoid().numpy()  # [N]
    labels = enc.labels()
    return {enc.name: [labels[int(x >= enc.cfg.threshold)] for x in p],
            f"{enc.name}_probability": [float(x) for x in p]}


def _numeric(enc: NumericEncoder, out: torch.Tensor, inputs: Mapping[str, Any]) -> Columns:
    return {enc.name: [float(x) for x in enc.decode(out)]}


def _next_token(enc: NextTokenEncoder, out: torch.Tensor, inputs: Mapping[str, Any]
                ) -> Columns:
    """The most likely token after each text: ``out`` is ``[N, T, V]``, read at the text's
    last position."""
    src = enc.source
    if src is None or src.name not in inputs:
        raise DataError(f"decoding output {enc.name!r} needs the encoded text input "
                        f"{enc.column!r}: pass decode(outputs, data.inputs)")
    last = inputs[src.name]["lengths"] - 1  # [N]
    prob = out[torch.arange(len(out)), last].softmax(-1)  # [N, V]
    best = prob.argmax(-1).tolist()
    return {enc.name: [src.decode([i]) for i in best],
            f"{enc.name}_probability": [float(prob[r, i]) for r, i in enumerate(best)]}


def _ctc(enc: Any, out: torch.Tensor, inputs: Mapping[str, Any]) -> Columns:
    """The transcript of each clip (data/transcript.py: greedy or beam, as configured)."""
    return {enc.name: enc.decode(out)}


DECODERS: dict[str, Callable[[Any, torch.Tensor, Mapping[str, Any]], Columns]] = {
    "category": _category, "binary": _binary, "numeric": _numeric,
    "next_token": _next_token, "ctc": _ctc}


def _column(values: Any) -> np.ndarray:
    if isinstance(values, list | tuple) and values and all(
            isinstance(v, np.ndarray) for v in values) and len({v.shape for v in values}) > 1:
        ragged = np.empty(len(values), dtype=object)  # e.g. sound clips of several lengths
        for i, v in enumerate(values):
            ragged[i] = v
        return ragged
    arr = np.asarray(values)
    if arr.dtype.kind in "OUS" or arr.ndim > 1 and arr.dtype == object:
        return np.array(list(values), dtype=object) if arr.ndim == 1 else arr
    return arr
