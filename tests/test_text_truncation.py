"""Long texts: `truncate: head | tail | head_tail`, `max_length: auto`, the warning's
words, the fitted length through the artifact, and the rule that tags keep the start."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from layerwise.config import TextInput, parse
from layerwise.data.text import TextEncoder, TruncationWarning, auto_length, truncated
from layerwise.errors import ConfigError, DataError


def _encoder(**kw: object) -> TextEncoder:
    return TextEncoder(TextInput(name="t", type="text", tokenizer="word", **kw))


def _texts(n: int = 40) -> np.ndarray:
    return np.array([" ".join(f"w{j}" for j in range(1 + i % 20)) for i in range(n)],
                    dtype=object)


def test_truncated_keeps_the_part_asked_for() -> None:
    ids = list(range(10))
    assert truncated(ids, 4, "head") == [0, 1, 2, 3]
    assert truncated(ids, 4, "tail") == [6, 7, 8, 9]
    assert truncated(ids, 8, "head_tail") == [0, 1, 4, 5, 6, 7, 8, 9]  # 2 + 6
    assert truncated(ids[:3], 4, "tail") == [0, 1, 2]                 # short: untouched


@pytest.mark.parametrize("how", ["head", "tail", "head_tail"])
def test_the_encoder_cuts_as_configured(how: str) -> None:
    enc = _encoder(max_length=4, truncate=how, min_frequency=1)
    values = np.array(["a b c d e f g h"], dtype=object)
    with pytest.warns(TruncationWarning, match="1 of 1 training texts"):
        enc.fit(values)
    row = enc.transform(values)["ids"][0].tolist()
    assert enc.decode(row) == {"head": "a b c d", "tail": "e f g h",
                               "head_tail": "a f g h"}[how]


def test_the_warning_says_what_was_kept() -> None:
    with pytest.warns(TruncationWarning, match="keeping their end"):
        _encoder(max_length=2, truncate="tail").fit(_texts())


def test_auto_length_is_the_95th_percentile_capped() -> None:
    assert auto_length([1] * 96 + [100] * 4) == 1  # a few long texts do not set the width
    assert auto_length(list(range(1, 101))) == 96
    assert auto_length([10_000] * 3) == 512 and auto_length([]) == 1


def test_max_length_auto_is_fitted_described_and_saved() -> None:
    enc = _encoder(max_length="auto")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncationWarning)
        enc.fit(_texts())
    counts = [1 + i % 20 for i in range(40)]
    assert enc.max_length == int(np.ceil(np.percentile(counts, 95)))
    assert enc.describe()["max_length"] == enc.max_length
    assert enc.transform(_texts())["ids"].shape == (40, enc.max_length)
    loaded = _encoder(max_length="auto")
    loaded.load_state(enc.state())  # the fitted length travels in the artifact's state
    assert loaded.max_length == enc.max_length


def test_auto_before_fitting_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="max_length auto is chosen when the encoder is"):
        _encoder(max_length="auto").transform(_texts())


def test_a_bad_max_length_is_named() -> None:
    raw = {"data": {"dataset": "wine"}, "inputs": [{"name": "t", "type": "text",
                                                   "max_length": 0}],
           "outputs": [{"name": "target", "type": "category"}],
           "model": {"family": "bag"}}
    with pytest.raises(ConfigError, match="max_length must be a positive number"):
        parse(raw)


def test_tags_refuse_a_tail_cut() -> None:
    from layerwise.data.build import Schema

    cfg = parse({"data": {"dataset": "pos-grammar"},
                 "inputs": [{"name": "text", "type": "text", "truncate": "tail"}],
                 "outputs": [{"name": "tags", "type": "tags", "input": "text"}],
                 "model": {"family": "rnn"}})
    with pytest.raises(DataError, match="tags need the text input 'text' to keep the start"):
        Schema.from_config(cfg)
