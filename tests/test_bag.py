"""The bag family (fastText-style): n-gram hashing, padding-free pooling, learning from
word order that single words cannot show, and a whole run through the artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from layerwise import api
from layerwise.config import BagConfig
from layerwise.models.bag import Bag, ngram_ids

pytestmark = pytest.mark.usefixtures("one_thread")

DESC: dict[str, Any] = {"numeric_dim": 0, "category_sizes": [], "category_dims": [],
                        "texts": {"text": {"vocab_size": 10, "max_length": 6, "pad_id": 0}},
                        "outputs": {}}


def test_ngram_ids_hash_each_window_into_the_buckets() -> None:
    ids = torch.tensor([[2, 3, 4, 0]])
    mask = torch.tensor([[True, True, True, False]])
    rows, valid = ngram_ids(ids, mask, 3, vocab_size=10, buckets=7)
    assert rows.shape == valid.shape == (1, 4 + 3 + 2)
    assert rows[0, :4].tolist() == [2, 3, 4, 0]                 # the tokens themselves
    assert valid[0].tolist() == [True] * 3 + [False] + [True, True, False] + [True, False]
    grams = rows[0, 4:]
    assert ((grams >= 10) & (grams < 17)).all()                 # inside the bucket rows
    again, _ = ngram_ids(torch.tensor([[9, 2, 3, 4]]), torch.ones(1, 4, dtype=torch.bool), 2,
                         10, 7)
    assert again[0, 4 + 1] == rows[0, 4]                        # (2, 3) hashes alike anywhere


def test_padding_changes_nothing_and_a_batch_of_one_agrees() -> None:
    torch.manual_seed(0)
    model = Bag(BagConfig(family="bag", embedding_dim=4, ngrams=3, buckets=16), DESC).eval()
    short = {"ids": torch.tensor([[5, 6, 7, 0, 0, 0]]), "lengths": torch.tensor([3])}
    both = {"ids": torch.tensor([[5, 6, 7, 0, 0, 0], [1, 2, 3, 4, 5, 6]]),
            "lengths": torch.tensor([3, 6])}
    one = model({"text": short})
    assert torch.allclose(one[0], model({"text": both})[0], atol=1e-6)
    assert model.out_features == 4


def _order_rows(n: int = 120) -> dict[str, list[str]]:
    # the same two words in every text: only their order (a bigram) tells the label
    texts = [("not good" if i % 2 else "good not") + f" filler{i % 5}" for i in range(n)]
    return {"text": texts, "label": ["neg" if i % 2 else "pos" for i in range(n)]}


def _config(tmp_path: Path, ngrams: int) -> dict[str, Any]:
    import pandas as pd

    path = tmp_path / "order.csv"
    pd.DataFrame(_order_rows()).to_csv(path, index=False)
    return {"name": "bag", "data": {"path": str(path)},
            "inputs": [{"name": "text", "type": "text", "max_length": "auto"}],
            "outputs": [{"name": "label", "type": "category"}],
            "model": {"family": "bag", "embedding_dim": 8, "ngrams": ngrams, "buckets": 64},
            "train": {"epochs": 12, "batch_size": 16, "optimizer": {"lr": 0.1},
                      "precision": "fp32", "progress": "quiet"}}


def test_words_alone_cannot_tell_the_order() -> None:
    ids = {"ids": torch.tensor([[3, 4, 5], [4, 3, 5]]), "lengths": torch.tensor([3, 3])}
    for n, same in ((1, True), (2, False)):
        torch.manual_seed(0)
        model = Bag(BagConfig(family="bag", embedding_dim=4, ngrams=n, buckets=16), DESC)
        out = model({"text": ids})
        assert torch.allclose(out[0], out[1]) is same


def test_bigrams_learn_the_order(tmp_path: Path) -> None:
    pairs = api.train(_config(tmp_path, 2), output=tmp_path / "bi")
    assert pairs.metrics["test"]["accuracy"] == 1.0
    model = api.load(tmp_path / "bi" / "model")            # through the artifact
    out = model.predict([{"text": "not good filler1"}, {"text": "good not filler1"}])
    assert [r["label"] for r in out] == ["neg", "pos"]
