"""Regressions from a first try: labels keep the data's values, and text truncation is said.

- a binary output of ``Yes``/``No`` predicted ``True``/``False`` and wrote per-class metrics
  under ``"False"``/``"True"``;
- ``max_length`` cut 4,199 of 4,231 training texts and training printed nothing.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import layerwise as lw
from layerwise.config import TextInput
from layerwise.data.text import TextEncoder, TruncationWarning

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


# ----------------------------------------------------------------------- binary labels


def rows(n: int = 80) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 2)).round(3)
    return [{"a": float(a), "b": float(b), "label": bool(a + b > 0)} for a, b in x]


def binary_config(path: Path) -> dict[str, Any]:
    return {"name": "labels", "seed": 0, "data": {"path": str(path)},
            "inputs": [{"name": "a", "type": "numeric"}, {"name": "b", "type": "numeric"}],
            "outputs": [{"name": "label", "type": "binary"}],
            "model": {"family": "mlp", "hidden": [8]},
            "train": {"epochs": 2, "batch_size": 16, "progress": "quiet"}}


def test_yes_no_labels_come_back_as_yes_no(tmp_path: Path) -> None:
    data = rows()
    lines = ["a,b,label"] + [f"{r['a']},{r['b']},{'Yes' if r['label'] else 'No'}"
                             for r in data]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    run = lw.train(binary_config(tmp_path / "d.csv"), output=tmp_path / "run")
    preds = lw.load(run.model_dir).predict([{"a": 2.0, "b": 2.0}, {"a": -2.0, "b": -2.0},
                                            {"a": 0.1, "b": 0.0}])
    assert {p["label"] for p in preds} <= {"Yes", "No"}
    assert all(isinstance(p["label"], str) for p in preds)
    metrics = json.loads((run.dir / "metrics.json").read_text())
    assert set(metrics["test"]["per_class"]) == {"Yes", "No"}
    assert metrics["test"]["labels"] == ["No", "Yes"]  # index 0 is the falsy label


def test_boolean_labels_stay_booleans(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows()), encoding="utf-8")
    run = lw.train(binary_config(path), output=tmp_path / "run")
    preds = lw.load(run.model_dir).predict([{"a": 2.0, "b": 2.0}, {"a": -2.0, "b": -2.0}])
    assert all(isinstance(p["label"], bool) for p in preds)
    metrics = json.loads((run.dir / "metrics.json").read_text())
    assert set(metrics["test"]["per_class"]) == {"False", "True"}


# ----------------------------------------------------------------------- text truncation


def text_encoder(max_length: int, tokenizer: str = "word") -> TextEncoder:
    return TextEncoder(TextInput(name="body", type="text", tokenizer=tokenizer,
                                 max_length=max_length))


# 10 texts of 2..11 words: max_length 8 cuts the 3 of 9, 10 and 11 words
TEXTS = np.array([" ".join(f"w{j}" for j in range(n)) for n in range(2, 12)], dtype=object)


@pytest.mark.parametrize("tokenizer", ["word", "bpe"])
def test_fitting_warns_with_the_count_of_cut_texts(tokenizer: str) -> None:
    enc = text_encoder(8, tokenizer)
    with pytest.warns(TruncationWarning) as caught:
        enc.fit(TEXTS)
    assert len(caught) == 1
    cut = enc.reference(TEXTS)["truncated"]  # what reference.json records
    msg = str(caught[0].message)
    assert f"text input 'body': {cut} of 10 training texts ({cut / 10:.1%}) are longer " \
           "than max_length 8 tokens and were cut" in msg
    if tokenizer == "word":
        assert cut == 3
    assert "raise max_length" in msg


def test_thousands_are_grouped_in_the_warning() -> None:
    texts = np.array(["a b c"] * 1200 + ["a"] * 3, dtype=object)
    with pytest.warns(TruncationWarning, match=r"1,200 of 1,203 training texts \(99\.8%\)"):
        text_encoder(2).fit(texts)


def test_no_warning_when_nothing_is_cut() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncationWarning)
        text_encoder(11).fit(TEXTS)  # the longest text is exactly max_length tokens
