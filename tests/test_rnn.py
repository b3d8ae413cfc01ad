"""The rnn family: cells, packing (padding is never read), pooling, forget-gate bias."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from pydantic import TypeAdapter

from layerwise.config import CategoryOutput, ModelConfig
from layerwise.errors import ConfigError
from layerwise.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


DESC: dict[str, Any] = {
    "numeric_dim": 2, "category_sizes": [], "category_dims": [], "images": {},
    "texts": {"text": {"vocab_size": 30, "max_length": 10, "pad_id": 0}},
    "outputs": {"y": ("category", 3)},
}
OUT = [CategoryOutput(name="y", type="category")]


def model(**kw: Any) -> torch.nn.Module:
    cfg = TypeAdapter(ModelConfig).validate_python({"family": "rnn", "embedding_dim": 6,
                                                    "hidden": 5, **kw})
    torch.manual_seed(0)
    return build_model(cfg, OUT, DESC).eval()


def batch() -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([10, 4, 1, 7])
    ids = torch.randint(2, 30, (4, 10), generator=g)
    ids[torch.arange(10)[None, :] >= lengths[:, None]] = 0
    return {"text": {"ids": ids, "lengths": lengths}, "numeric": torch.randn(4, 2, generator=g)}


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("pooling", ["last", "mean", "max", "attention"])
def test_padding_is_never_read(cell: str, pooling: str) -> None:
    m = model(cell=cell, pooling=pooling, bidirectional=True, layers=2)
    x = batch()
    noisy = {"text": {"ids": x["text"]["ids"].clone(), "lengths": x["text"]["lengths"]},
             "numeric": x["numeric"]}
    noisy["text"]["ids"][1, 4:] = 5  # junk after the real tokens
    with torch.no_grad():
        a, b = m(x)["y"], m(noisy)["y"]
        # a row alone gives the same result as in a batch with longer rows
        alone = m({"text": {"ids": x["text"]["ids"][1:2, :4], "lengths": torch.tensor([4])},
                   "numeric": x["numeric"][1:2]})["y"]
    assert torch.allclose(a, b, atol=1e-6)
    assert torch.allclose(a[1:2], alone, atol=1e-5)


def test_last_state_of_a_unidirectional_lstm_is_the_state_after_the_last_token() -> None:
    m = model(cell="lstm", pooling="last")
    enc = m.backbone.encoders["text"]
    x = batch()["text"]
    with torch.no_grad():
        pooled = enc(x)
        states, _ = enc.rnn(enc.embedding(x["ids"]))  # unpacked: runs over the padding too
    for i, n in enumerate(x["lengths"].tolist()):
        assert torch.allclose(pooled[i], states[i, n - 1], atol=1e-6)


def test_lstm_forget_gate_bias_starts_at_one() -> None:
    enc = model(cell="lstm", layers=2, bidirectional=True).backbone.encoders["text"]
    h = 5
    for name, p in enc.rnn.named_parameters():
        if name.startswith("bias_ih"):
            assert torch.equal(p[h: 2 * h], torch.ones(h))
            assert torch.equal(p[:h], torch.zeros(h))
        elif name.startswith("bias_hh"):
            assert torch.equal(p, torch.zeros_like(p))


def test_rnn_needs_a_text_input() -> None:
    cfg = TypeAdapter(ModelConfig).validate_python({"family": "rnn"})
    with pytest.raises(ConfigError, match="at least one text, timeseries, series or audio input"):
        build_model(cfg, OUT, dict(DESC, texts={}))


def test_recurrent_models_default_to_gradient_clipping_and_record_it() -> None:
    from layerwise.api import family_defaults
    from layerwise.config import parse

    base = {"data": {"dataset": "tweets-sentiment"}, "inputs": [{"name": "t", "type": "text"}],
            "outputs": [{"name": "y", "type": "category"}]}
    cfg = parse({**base, "model": {"family": "rnn"}})
    assert "train.grad_clip" in family_defaults(cfg) and cfg.train.grad_clip == 1.0
    cfg = parse({**base, "model": {"family": "rnn"}, "train": {"grad_clip": 5.0}})
    assert family_defaults(cfg) == {} and cfg.train.grad_clip == 5.0
    cfg = parse({**base, "model": {"family": "transformer"}})
    assert family_defaults(cfg) == {} and cfg.train.grad_clip is None
