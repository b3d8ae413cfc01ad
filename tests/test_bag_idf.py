"""The bag family's ``weighting: idf`` (issue 11): document frequencies counted on the
training split, the weighted mean and L2-normalised sum, and the weights travel with the
artifact."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from layerwise.api import load, train
from layerwise.config import parse
from layerwise.models.bag import BagEncoder

pytestmark = pytest.mark.usefixtures("one_thread")


def _encoder(pooling: str = "mean", ngrams: int = 1) -> BagEncoder:
    cfg = parse({"data": {"dataset": "wine"}, "inputs": [{"name": "t", "type": "text"}],
                 "outputs": [{"name": "y", "type": "binary"}],
                 "model": {"family": "bag", "embedding_dim": 3, "ngrams": ngrams,
                           "buckets": 7, "weighting": "idf", "pooling": pooling}}).model
    return BagEncoder(cfg, vocab_size=6, pad_id=0)


def test_document_frequencies_count_each_row_once_per_text() -> None:
    enc = _encoder()
    texts = {"ids": torch.tensor([[2, 3, 3], [2, 4, 0], [5, 0, 0]]),
             "lengths": torch.tensor([3, 2, 1])}
    enc.fit_idf(texts)
    n = 3
    want = {2: 2, 3: 1, 4: 1, 5: 1, 1: 0}
    for row, df in want.items():
        assert enc.idf[row].item() == pytest.approx(math.log((1 + n) / (1 + df)) + 1)


def test_bigram_buckets_get_their_own_frequencies() -> None:
    enc = _encoder(ngrams=2)
    enc.fit_idf({"ids": torch.tensor([[2, 3], [2, 3], [3, 2]]),
                 "lengths": torch.tensor([2, 2, 2])})
    pair = enc.idf[6:]  # the buckets after the 6 token rows
    assert sorted(pair.tolist())[:2] == pytest.approx([math.log(4 / 3) + 1,
                                                       math.log(4 / 2) + 1])


@pytest.mark.parametrize("pooling", ["mean", "sqrt"])
def test_the_pooled_vector_is_weighted_by_idf(pooling: str) -> None:
    enc = _encoder(pooling)
    enc.idf.copy_(torch.tensor([1.0, 1.0, 2.0, 0.5, 1.0, 1.0]))
    out = enc({"ids": torch.tensor([[2, 3]]), "lengths": torch.tensor([2])})[0]
    e = enc.embedding.weight
    total = 2.0 * e[2] + 0.5 * e[3]
    norm = 2.5 if pooling == "mean" else math.sqrt(2.0 ** 2 + 0.5 ** 2)
    assert torch.allclose(out, total / norm, atol=1e-6)


def test_a_trained_bag_saves_its_idf_and_predicts_the_same_after_loading(tmp_path: Path
                                                                         ) -> None:
    path = tmp_path / "t.csv"
    words = ["great", "lovely", "phone", "car", "terrible", "awful", "the", "is", "a"]
    lines = ["text,sentiment"]
    for i in range(120):
        good = i % 2 == 0
        picked = [words[(i * 7 + k) % 9] for k in range(4)] + [words[i % 2 * 4 + i % 3 % 2]]
        lines.append(f"{' '.join(picked)},{'positive' if good else 'negative'}")
    path.write_text("\n".join(lines) + "\n")
    cfg = {"name": "idf", "data": {"path": str(path)},
           "inputs": [{"name": "text", "type": "text", "max_length": 24}],
           "outputs": [{"name": "sentiment", "type": "category"}],
           "model": {"family": "bag", "embedding_dim": 8, "buckets": 512,
                     "weighting": "idf"},
           "train": {"epochs": 1, "batch_size": 32, "progress": "quiet"}}
    run = train(cfg, output=tmp_path / "run")
    art = load(tmp_path / "run" / "model")
    idf = art.model.backbone.encoders["text"].idf
    assert float(idf.max()) > 1.5 and float(idf.min()) >= 1.0  # fitted, not the initial 1s
    rows = ["what a great phone", "this car is terrible"]
    first = art.predict([{"text": t} for t in rows])
    again = load(tmp_path / "run" / "model").predict([{"text": t} for t in rows])
    assert [p["sentiment"] for p in first] == [p["sentiment"] for p in again]
    assert run.metrics["test"]["count"] > 0


def test_unique_counts_each_row_once_per_text() -> None:
    cfg = parse({"data": {"dataset": "wine"}, "inputs": [{"name": "t", "type": "text"}],
                 "outputs": [{"name": "y", "type": "binary"}],
                 "model": {"family": "bag", "embedding_dim": 3, "ngrams": 2, "buckets": 7,
                           "unique": True}}).model
    enc = BagEncoder(cfg, vocab_size=6, pad_id=0)
    repeated = enc({"ids": torch.tensor([[2, 3, 2, 3, 2, 3, 0]]),
                    "lengths": torch.tensor([6])})
    once = enc({"ids": torch.tensor([[2, 3, 2, 0, 0, 0, 0]]), "lengths": torch.tensor([3])})
    # rows: tokens 2, 3 and the pairs (2,3), (3,2): the same set in both texts
    assert torch.allclose(repeated, once, atol=1e-6)
