"""Text models end to end: train, save, load, predict on raw strings (awkward ones too)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import layerwise as lw
from layerwise.api import build_for
from layerwise.config import parse
from layerwise.data.build import build
from tests.model_helpers import in_memory_and_loaded

GOOD = ["love", "great", "happy", "wonderful"]
BAD = ["hate", "awful", "sad", "terrible"]
FILL = ["the", "phone", "is", "my", "new", "car", "today", "really"]
AWKWARD = ["I love it", "", "ünïcödé ☃ never seen", "awful " * 500, "NA"]


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


@pytest.fixture
def reviews(tmp_path: Path) -> Path:
    rng = random.Random(0)
    lines = ["text,label"]
    for i in range(150):
        label = ["positive", "negative", "neutral"][i % 3]
        words = rng.sample(FILL, 4)
        if label != "neutral":
            words.insert(rng.randrange(5), rng.choice(GOOD if label == "positive" else BAD))
        lines.append(f"{' '.join(words)},{label}")
    path = tmp_path / "reviews.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def config(path: Path, model: dict[str, Any], tokenizer: str) -> dict[str, Any]:
    return {"name": "text_e2e", "seed": 0, "data": {"path": str(path)},
            "inputs": [{"name": "text", "type": "text", "tokenizer": tokenizer,
                        "max_length": 12, "vocab_size": 300}],
            "outputs": [{"name": "label", "type": "category"}], "model": model,
            "train": {"epochs": 3, "batch_size": 16, "progress": "quiet", "threads": 1,
                      "optimizer": {"lr": 0.01}}}


def test_lstm_run_learns_records_its_defaults_and_predicts_raw_strings(
        reviews: Path, tmp_path: Path) -> None:
    model = {"family": "rnn", "cell": "lstm", "embedding_dim": 16, "hidden": 16,
             "bidirectional": True, "pooling": "max"}
    run = lw.train(config(reviews, model, "word"), output=tmp_path / "run",
                   overrides=["train.epochs=10"])
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["defaults"] == {"train.grad_clip": "1.0: the default for recurrent models "
                                                     "(exploding gradients)"}
    assert run.config.train.grad_clip == 1.0
    assert metrics["test"]["accuracy"] > 0.6
    meta = json.loads((run.model_dir / "layerwise.json").read_text())
    vocab = meta["schema"]["inputs"][0]["state"]["vocab"]  # the vocabulary, as JSON
    assert vocab[:2] == ["<pad>", "<unk>"] and "love" in vocab
    preds = lw.load(run.model_dir).predict(AWKWARD)
    assert len(preds) == len(AWKWARD) and preds[0]["label"] == "positive"
    assert all(abs(sum(p["label_probabilities"].values()) - 1) < 1e-4 for p in preds)


@pytest.mark.parametrize("family,tokenizer", [("transformer", "bpe"), ("rnn", "char")])
def test_a_loaded_model_predicts_exactly_like_the_in_memory_one(
        reviews: Path, tmp_path: Path, family: str, tokenizer: str) -> None:
    if tokenizer == "bpe":
        pytest.importorskip("tokenizers")
    small = {"transformer": {"family": "transformer", "d_model": 16, "heads": 2, "layers": 1,
                             "positions": "sinusoidal"},
             "rnn": {"family": "rnn", "cell": "gru", "embedding_dim": 8, "hidden": 8,
                     "pooling": "attention"}}[family]
    in_memory, loaded = in_memory_and_loaded(parse(config(reviews, small, tokenizer)),
                                             tmp_path)
    a, b = in_memory.predict(AWKWARD), loaded.predict(AWKWARD)
    assert [p["label"] for p in a] == [p["label"] for p in b]
    assert np.allclose([list(p["label_probabilities"].values()) for p in a],
                       [list(p["label_probabilities"].values()) for p in b], atol=1e-6)
    # one row at a time gives the same answer as the batch (padding is never read)
    single = [loaded.predict([t])[0]["label_probability"] for t in AWKWARD]
    assert np.allclose(single, [p["label_probability"] for p in b], atol=1e-5)


def test_text_with_an_image_family_is_a_clear_error(reviews: Path) -> None:
    from layerwise.errors import ConfigError

    cfg = parse(config(reviews, {"family": "mlp", "hidden": [4]}, "word"))
    with pytest.raises(ConfigError, match="cannot read text inputs.*rnn or transformer"):
        build_for(cfg, build(cfg))
