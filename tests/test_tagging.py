"""Token classification: tags aligned with word/char tokens, per-token loss ignoring
padding, token accuracy and macro-F1, save/load, predict a tag sequence per text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import layerwise as lw
from layerwise.config import parse
from layerwise.data.build import build
from layerwise.data.sequence_sets import pos_grammar
from layerwise.errors import ConfigError, DataError
from layerwise.models.sequence_heads import TagsHead
from tests.model_helpers import in_memory_and_loaded

AWKWARD = ["They duck under the light table .", "", "Zork ☃ likes a duck !",
           "the duck " * 100]


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def write(path: Path, texts: list[str], tags: list[str]) -> Path:
    import csv

    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "tags"])
        w.writerows(zip(texts, tags))
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    cols = pos_grammar(n=400, seed=1)["all"].columns
    return write(tmp_path / "pos.csv", list(cols["text"]), list(cols["tags"]))


def config(path: Path, model: dict[str, Any], tokenizer: str = "word") -> dict[str, Any]:
    return {"name": "tags", "seed": 0, "data": {"path": str(path),
                                                 "split": {"stratify": False}},
            "inputs": [{"name": "text", "type": "text", "tokenizer": tokenizer,
                        "max_length": 24}],
            "outputs": [{"name": "tags", "type": "tags", "input": "text"}],
            "model": model,
            "train": {"epochs": 4, "batch_size": 16, "progress": "quiet", "threads": 1,
                      "optimizer": {"lr": 0.01}}}


LSTM = {"family": "rnn", "cell": "lstm", "embedding_dim": 16, "hidden": 16,
        "bidirectional": True}
TRANSFORMER = {"family": "transformer", "d_model": 16, "heads": 2, "layers": 1,
               "positions": "learned", "dropout": 0.0}


def test_the_grammar_is_deterministic_and_aligned_with_word_tokens() -> None:
    a, b = pos_grammar(n=50)["all"].columns, pos_grammar(n=50)["all"].columns
    assert list(a["text"]) == list(b["text"])
    import re

    for text, tags in zip(a["text"], a["tags"], strict=True):
        assert len(re.findall(r"\w+|[^\w\s]", text)) == len(tags.split())


def test_tag_count_mismatch_is_an_error_naming_the_row(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", ["the duck .", "they duck ."],
                 ["DET NOUN PUNCT", "PRON VERB"])
    with pytest.raises(DataError, match=r"t.csv, line 3, column 'tags': 2 tags for 3 tokens"):
        build(parse(config(path, LSTM)))


def test_config_rules_for_tags(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tags align with word or char tokens"):
        parse(config(tmp_path / "t.csv", LSTM, tokenizer="bpe"))
    with pytest.raises(ConfigError, match="tagging needs model.family rnn or a transformer "
                                          "encoder"):
        parse(config(tmp_path / "t.csv", {**TRANSFORMER, "pooling": "cls"}))
    with pytest.raises(ConfigError, match="tagging needs"):
        parse(config(tmp_path / "t.csv", {"family": "mlp"}))


def test_char_tokens_take_one_tag_per_character(tmp_path: Path) -> None:
    words = ["ab", "ba c", "cab", "a"] * 5
    tags = [" ".join("S" if ch == " " else "V" if ch == "a" else "C" for ch in w)
            for w in words]
    cfg = parse(config(write(tmp_path / "c.csv", words, tags), LSTM, tokenizer="char"))
    ds = build(cfg)
    assert ds.schema.outputs[0].vocab == ["C", "S", "V"]
    assert ds.train.targets["tags"].shape[1] == 24


def test_targets_ignore_padding_truncation_and_empty_texts(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", ["the duck .", "they duck .", "", "a b c d e f"] * 3,
                 ["DET NOUN PUNCT", "PRON VERB PUNCT", "", "X X X X X X"] * 3)
    cfg = parse(config(path, LSTM))
    cfg.inputs[0].max_length = 4
    cfg.data.split.test = cfg.data.split.validation = 0.0
    ds = build(cfg)
    y = ds.train.targets["tags"]
    enc = ds.schema.outputs[0]
    assert y.shape == (12, 4) and enc.vocab == ["DET", "NOUN", "PRON", "PUNCT", "VERB", "X"]
    assert y[0].tolist() == [0, 1, 3, -100]
    assert y[2].tolist() == [-100] * 4  # the empty text's <unk> stand-in has no tag
    assert y[3].tolist() == [5] * 4  # truncated with its tokens
    head = TagsHead("tags", 8, 6, max_length=4)
    out = head(torch.randn(12, 3, 8))  # a batch cut to 3 tokens comes back padded to 4
    assert out.shape == (12, 4, 6) and torch.isfinite(head.loss(out, y))


@pytest.mark.parametrize("model", [LSTM, TRANSFORMER], ids=["rnn", "transformer"])
def test_tagger_end_to_end(corpus: Path, tmp_path: Path, model: dict[str, Any]) -> None:
    run = lw.train(config(corpus, model), output=tmp_path / "run")
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())["test"]
    assert m["token_accuracy"] > 0.8 and 0 < m["macro_f1"] <= 1
    assert m["tokens"] > 500 and "PUNCT" in m["per_tag"]
    preds = lw.load(run.model_dir).predict(AWKWARD)
    first = preds[0]["tags"]
    assert first["tokens"] == ["They", "duck", "under", "the", "light", "table", "."]
    assert len(first["tags"]) == 7 and first["tags"][-1] == "PUNCT"
    assert preds[1]["tags"] == {"tokens": [], "tags": [], "probabilities": []}
    assert len(preds[3]["tags"]["tags"]) == 24  # truncated at max_length


def test_a_loaded_tagger_predicts_exactly_like_the_in_memory_one(
        corpus: Path, tmp_path: Path) -> None:
    in_memory, loaded = in_memory_and_loaded(parse(config(corpus, TRANSFORMER)), tmp_path)
    a, b = in_memory.predict(AWKWARD), loaded.predict(AWKWARD)
    assert [p["tags"]["tags"] for p in a] == [p["tags"]["tags"] for p in b]
    assert np.allclose(a[0]["tags"]["probabilities"], b[0]["tags"]["probabilities"])
    # one text at a time tags like the batch (padding is never read)
    single = [loaded.predict([t])[0]["tags"]["tags"] for t in AWKWARD]
    assert single == [p["tags"]["tags"] for p in b]


def test_evaluating_on_a_file_with_an_unseen_tag_names_it(corpus: Path, tmp_path: Path) -> None:
    cfg = parse(config(corpus, LSTM))
    cfg.train.epochs = 1
    run = lw.train(cfg, output=tmp_path / "run")
    path = write(tmp_path / "new.csv", ["the duck ."], ["DET NOUN SYM"])
    with pytest.raises(DataError, match="tag 'SYM' was not seen in training"):
        lw.evaluate(run.model_dir, path)
