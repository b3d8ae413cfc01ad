"""Chunk-and-pool for long texts (issue 11, ``truncate: chunks``): the windows, their
pooling in the model, and a label that only the end of a long text gives away."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from layerwise.api import load, train
from layerwise.config import parse
from layerwise.data.text import TruncationWarning, chunked
from layerwise.errors import ConfigError
from layerwise.models.bag import BagEncoder
from layerwise.models.layers import ChunkPool

pytestmark = pytest.mark.usefixtures("one_thread")


def test_windows_of_a_text_and_the_padding_windows() -> None:
    out = chunked([list(range(2, 12)), [], [5, 6]], t_max=4, c_max=2)
    assert out["ids"].shape == (3, 2, 4)
    assert out["ids"][0].tolist() == [[2, 3, 4, 5], [6, 7, 8, 9]]  # cut after 2 windows
    assert out["lengths"].tolist() == [[4, 4], [1, 0], [2, 0]]    # empty text: one <unk>


def test_pooling_skips_the_empty_windows() -> None:
    cfg = parse({"data": {"dataset": "wine"}, "inputs": [{"name": "t", "type": "text"}],
                 "outputs": [{"name": "y", "type": "binary"}],
                 "model": {"family": "bag", "embedding_dim": 4, "ngrams": 1}}).model
    enc = BagEncoder(cfg, vocab_size=20, pad_id=0)
    pool = ChunkPool(enc, "mean")
    text = chunked([[3, 4, 5, 6, 7], [8]], t_max=3, c_max=4)
    got = pool(text)
    first = [enc({"ids": torch.tensor([w]), "lengths": torch.tensor([len(w)])})
             for w in ([3, 4, 5], [6, 7])]
    assert torch.allclose(got[0], (first[0][0] + first[1][0]) / 2)
    assert torch.allclose(got[1], enc({"ids": torch.tensor([[8]]),
                                       "lengths": torch.tensor([1])})[0])


def _long_texts(path: Path, n: int = 120) -> Path:
    """Twenty filler words, then the word that gives the label: past a head of 8."""
    rng = np.random.default_rng(0)
    filler = [f"w{i}" for i in range(30)]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(n):
            label = ["pos", "neg"][i % 2]
            words = list(rng.choice(filler, 20)) + [{"pos": "splendid", "neg": "dreadful"}[
                label]]
            w.writerow([" ".join(words), label])
    return path


def _config(path: Path, family: dict[str, Any], **text: Any) -> dict[str, Any]:
    return {"name": "chunks", "seed": 0, "data": {"path": str(path)},
            "inputs": [{"name": "text", "type": "text", "max_length": 8, **text}],
            "outputs": [{"name": "label", "type": "binary"}], "model": family,
            "train": {"epochs": 12, "batch_size": 16, "progress": "quiet",
                      "optimizer": {"lr": 0.02}}}


@pytest.mark.parametrize("family", [
    {"family": "bag", "embedding_dim": 8, "ngrams": 1},
    {"family": "rnn", "cell": "gru", "embedding_dim": 8, "hidden": 8, "pooling": "max"}])
def test_chunks_read_the_end_of_a_long_text_that_the_head_loses(tmp_path: Path,
                                                               family: dict[str, Any]
                                                               ) -> None:
    path = _long_texts(tmp_path / "long.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncationWarning)
        head = train(_config(path, family), output=tmp_path / "head")
    chunks = train(_config(path, family, truncate="chunks", max_chunks=3,
                           chunk_pool="max"), output=tmp_path / "chunks")
    assert head.metrics["test"]["accuracy"] <= 0.75          # the head never sees the label
    assert chunks.metrics["test"]["accuracy"] >= 0.95
    preds = load(tmp_path / "chunks" / "model").predict(str(path))
    truth = [r[1] for r in list(csv.reader(path.open()))[1:]]
    assert np.mean([p["label"] == t for p, t in zip(preds, truth)]) >= 0.95


def test_cut_windows_are_counted_and_chunks_refuse_a_language_model(tmp_path: Path) -> None:
    path = _long_texts(tmp_path / "long.csv", n=40)
    with pytest.warns(TruncationWarning, match=r"longer than max_chunks 2 x max_length 8 = "
                                               r"16 tokens"):
        train(_config(path, {"family": "bag", "embedding_dim": 4}, truncate="chunks",
                      max_chunks=2) | {"train": {"epochs": 1, "progress": "quiet"}},
              output=tmp_path / "run")
    lm = {"data": {"path": str(path)},
          "inputs": [{"name": "text", "type": "text", "truncate": "chunks"}],
          "outputs": [{"name": "next", "type": "next_token", "input": "text"}],
          "model": {"family": "transformer", "causal": True, "d_model": 16, "heads": 2}}
    with pytest.raises(ConfigError, match="truncate: chunks is for classifying long texts"):
        parse(lm)
