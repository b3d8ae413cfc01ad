"""Text inputs: tokenizers fitted on train only, padding/truncation, awkward input, JSON state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from layerwise.config import Config, TextInput, parse
from layerwise.data.build import Schema, build
from layerwise.data.table import Table
from layerwise.data.text import PAD_ID, UNK_ID, TextEncoder, TruncationWarning
from layerwise.errors import ConfigError, DataError

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


TRAIN = np.array(["the cat sat", "the dog sat", "a cat ran", "the cat ran fast"], dtype=object)


def encoder(**kw: Any) -> TextEncoder:
    cfg = TextInput(name="text", type="text", **kw)
    enc = TextEncoder(cfg)
    enc.fit(TRAIN)
    return enc


def test_word_vocabulary_is_ranked_limited_and_reserves_pad_and_unk() -> None:
    enc = encoder(tokenizer="word", vocab_size=5)
    assert enc.vocab[:2] == ["<pad>", "<unk>"]
    assert enc.vocab[2:] == ["cat", "the", "ran"]  # by count, then alphabetically
    rare = encoder(tokenizer="word", min_frequency=2)
    assert "dog" not in rare.vocab and "sat" in rare.vocab
    out = enc.transform(np.array(["The CAT zebra"], dtype=object))
    assert out["ids"][0, :3].tolist() == [3, 2, UNK_ID]  # lowercased; unseen word → <unk>


def test_char_tokenizer_maps_unseen_characters_to_unk() -> None:
    enc = encoder(tokenizer="char", max_length=8)
    out = enc.transform(np.array(["cat€"], dtype=object))
    assert out["lengths"].tolist() == [4]
    assert out["ids"][0, 3].item() == UNK_ID and out["ids"][0, 0].item() != UNK_ID
    assert enc.decode(out["ids"][0].tolist()) == "cat<unk>"


def test_padding_truncation_and_the_empty_text() -> None:
    with pytest.warns(TruncationWarning, match=r"1 of 4 training texts \(25\.0%\)"):
        enc = encoder(tokenizer="word", max_length=3)  # "the cat ran fast" is cut
    out = enc.transform(np.array(["the cat sat on the mat", "", "cat"], dtype=object))
    assert out["ids"].shape == (3, 3) and out["ids"].dtype == torch.long
    assert out["lengths"].tolist() == [3, 1, 1]  # truncated keeps the start; empty → <unk>
    assert out["ids"][0].tolist() == [enc.encode("the cat sat")[i] for i in range(3)]
    assert out["ids"][1].tolist() == [UNK_ID, PAD_ID, PAD_ID]
    assert out["ids"][2, 1:].tolist() == [PAD_ID, PAD_ID]


def test_bpe_trains_deterministically_and_round_trips_through_json() -> None:
    pytest.importorskip("tokenizers")
    a, b = encoder(tokenizer="bpe", vocab_size=300), encoder(tokenizer="bpe", vocab_size=300)
    assert a.state() == b.state()
    state = json.loads(json.dumps(a.state()))  # plain JSON, no pickle
    assert state["tokenizer"] == "bpe" and isinstance(state["bpe"], dict)
    c = TextEncoder(a.cfg)
    c.load_state(state)
    texts = np.array(["the cat sat", "naïve 世界 🙂", ""], dtype=object)
    assert torch.equal(a.transform(texts)["ids"], c.transform(texts)["ids"])
    ids = a.transform(texts)["ids"]
    assert (ids[:2] != UNK_ID).all()  # byte-level: nothing is unknown
    assert c.decode(ids[0].tolist()).strip() == "the cat sat"


def test_state_must_match_the_configured_tokenizer() -> None:
    enc = encoder(tokenizer="word")
    other = TextEncoder(TextInput(name="text", type="text", tokenizer="char"))
    with pytest.raises(DataError, match="saved tokenizer 'word'"):
        other.load_state(enc.state())


def test_missing_text_is_an_error_naming_the_row_unless_filled() -> None:
    table = Table({"text": np.array(["ok", None, "NA"], dtype=object)}, "tweets.csv")
    enc = TextEncoder(TextInput(name="text", type="text"))
    with pytest.raises(DataError, match=r"tweets.csv, row 2, column 'text'.*missing"):
        enc.check(table.column("text"), table)
    filled = TextEncoder(TextInput(name="text", type="text", missing="constant"))
    values = filled.check(table.column("text"), table)
    assert values.tolist() == ["ok", "", "NA"]  # "NA" is a word, not a missing value


def test_tokenizers_are_fitted_on_the_training_split_only(tmp_path: Path) -> None:
    rows = ["text,label"] + [f"common words here {i % 3},{'ab'[i % 2]}" for i in range(40)]
    rows[-1] = "onlyinlastrow,b"
    path = tmp_path / "t.csv"
    path.write_text("\n".join(rows) + "\n")
    cfg = parse({"data": {"path": str(path), "split": {"test": 0.25, "validation": 0.0}},
                 "inputs": [{"name": "text", "type": "text"}],
                 "outputs": [{"name": "label", "type": "category"}],
                 "model": {"family": "rnn", "hidden": 4, "embedding_dim": 4}})
    ds = build(cfg)
    enc = ds.schema.texts[0]
    seen = {w for t in ds.raw_train["text"] for w in str(t).split()}  # type: ignore[index]
    assert set(enc.vocab[2:]) <= seen
    desc = ds.schema.describe()["texts"]["text"]
    assert desc == {"vocab_size": enc.size, "max_length": 128, "pad_id": 0, "tokenizer": "word"}
    assert ds.train.inputs["text"]["ids"].shape[1] == 128


def test_config_checks_text_and_transformer_fields() -> None:
    base: dict[str, Any] = {"data": {"dataset": "tweets-sentiment"},
                            "inputs": [{"name": "t", "type": "text"}],
                            "outputs": [{"name": "y", "type": "category"}]}
    with pytest.raises(ConfigError, match="multiple of heads"):
        parse({**base, "model": {"family": "transformer", "d_model": 10, "heads": 3}})
    with pytest.raises(ConfigError, match=r"unknown key 'inputs.0.tokeniser'.*tokenizer"):
        parse({**base, "inputs": [{"name": "t", "type": "text", "tokeniser": "bpe"}],
               "model": {"family": "rnn"}})
    with pytest.raises(ConfigError, match="model.pooling"):
        parse({**base, "model": {"family": "rnn", "pooling": "median"}})
    assert isinstance(parse({**base, "model": {"family": "rnn"}}), Config)
    assert Schema.from_config(parse({**base, "model": {"family": "rnn"}})).texts
