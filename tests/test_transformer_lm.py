"""Language models: next_token outputs, causal masking, weight tying, the key-value cache,
sampling / greedy / beam decoding, and `layerwise generate`."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import TypeAdapter

import layerwise as lw
from layerwise.config import ModelConfig, NextTokenOutput, TextInput, parse
from layerwise.data.text import NextTokenEncoder, TextEncoder
from layerwise.errors import ConfigError
from layerwise.models import build_model
from layerwise.models.transformer import Decoder, pick

V = 12
DESC: dict[str, Any] = {"numeric_dim": 0, "category_sizes": [], "category_dims": [],
                        "images": {}, "texts": {"text": {"vocab_size": V, "max_length": 16,
                                                         "pad_id": 0}},
                        "outputs": {"next": ("next_token", V)}}
OUT = [NextTokenOutput(name="next", type="next_token", input="text")]


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def lm(positions: str = "rotary") -> Any:
    cfg = TypeAdapter(ModelConfig).validate_python(
        {"family": "transformer", "causal": True, "d_model": 16, "heads": 2, "layers": 2,
         "dropout": 0.0, "positions": positions})
    torch.manual_seed(0)
    return build_model(cfg, OUT, DESC).eval()


def test_config_requires_a_causal_transformer_over_a_named_text_input() -> None:
    base: dict[str, Any] = {"data": {"dataset": "kjv-blocks"},
                            "inputs": [{"name": "text", "type": "text"}]}
    ok = {"family": "transformer", "causal": True}
    with pytest.raises(ConfigError, match="causal: true"):
        parse({**base, "outputs": [{"name": "n", "type": "next_token", "input": "text"}],
               "model": {"family": "transformer"}})
    with pytest.raises(ConfigError, match="must name a text input"):
        parse({**base, "outputs": [{"name": "n", "type": "next_token", "input": "txt"}],
               "model": ok})
    assert parse({**base, "outputs": [{"name": "n", "type": "next_token", "input": "text"}],
                  "model": ok}).model.causal


def test_targets_are_the_next_tokens_and_ignore_the_end() -> None:
    text = TextEncoder(TextInput(name="text", type="text", tokenizer="char", max_length=5))
    text.fit(np.array(["abc"], dtype=object))
    enc = NextTokenEncoder(NextTokenOutput(name="next", type="next_token", input="text"))
    enc.source = text
    y = enc.transform(np.array(["abc", "a", "abcabc"], dtype=object))
    a, b, c = (text.encode(ch)[0] for ch in "abc")
    assert y.tolist() == [[b, c, -100, -100, -100], [-100] * 5, [b, c, a, b, -100]]


@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "rotary"])
def test_causal_outputs_never_see_the_future_and_the_cache_matches(positions: str) -> None:
    m = lm(positions)
    ids = torch.randint(2, V, (2, 10), generator=torch.Generator().manual_seed(0))
    x = {"text": {"ids": ids, "lengths": torch.full((2,), 10)}}
    changed = ids.clone()
    changed[:, 6:] = 3
    with torch.no_grad():
        a = m(x)["next"]
        b = m({"text": {"ids": changed, "lengths": torch.full((2,), 10)}})["next"]
        assert a.shape == (2, 10, V)
        assert torch.allclose(a[:, :6], b[:, :6], atol=1e-5)
        enc = m.backbone.encoders["text"]
        caches: list[dict[str, torch.Tensor]] = [{} for _ in enc.blocks]
        first = enc.step(ids[:, :4], caches, 0)       # a prompt, then one token at a time
        steps = [enc.step(ids[:, t: t + 1], caches, t) for t in range(4, 10)]
    assert torch.allclose(torch.cat([first, *steps], 1), a, atol=1e-4)


def test_weights_are_tied_and_the_head_owns_none() -> None:
    m = lm()
    assert not [k for k in m.state_dict() if k.startswith("heads.")]
    emb = m.backbone.encoders["text"].tokens.weight
    h = torch.randn(1, 3, 16)
    assert torch.allclose(m.heads["next"](h), h @ emb.T)


def test_decoding_greedy_cached_equals_uncached_and_one_beam_is_greedy() -> None:
    dec = Decoder(lm().backbone)
    prompt = [3, 4, 5]
    cached = dec.sample(prompt, 20, greedy=True)  # runs past the 16-position window too
    uncached = dec.sample(prompt, 20, greedy=True, use_cache=False)
    # identical while the window holds everything (3 + 13 = 16 positions); past it the
    # cache restarts from the recent half and the recomputation slides: both are defined
    assert cached[:13] == uncached[:13] and len(cached) == len(uncached) == 20
    assert dec.beam(prompt, 8, beams=1) == cached[:8]
    assert len(dec.beam(prompt, 8, beams=3)) == 8
    s1 = dec.sample(prompt, 10, temperature=1.0, top_k=5, seed=1)
    assert s1 == dec.sample(prompt, 10, temperature=1.0, top_k=5, seed=1)


def test_pick_honours_top_k_and_top_p() -> None:
    logits = torch.tensor([0.0, 3.0, 2.9, -1.0])
    g = torch.Generator().manual_seed(0)
    assert {pick(logits, 1.0, 1, None, False, g) for _ in range(20)} == {1}
    assert {pick(logits, 1.0, None, 0.3, False, g) for _ in range(20)} == {1}
    assert {pick(logits, 1.0, 2, None, False, g) for _ in range(50)} == {1, 2}
    assert pick(logits, 0.0, None, None, False, g) == 1
    assert pick(logits * 1e30, 1e-30, None, None, False, g) == 1  # regression: NaN probabilities


def test_a_char_lm_trains_saves_and_generates(tmp_path: Path) -> None:
    from layerwise.cli import main

    verse = "and god said let there be light and there was light. "
    path = tmp_path / "lines.csv"
    path.write_text("text\n" + "".join(f"{verse[i:] + verse[:i]}\n" for i in range(0, 50, 2)))
    cfg = {"name": "lm", "data": {"path": str(path), "split": {"validation": 0.1,
                                                                "test": 0.1}},
           "inputs": [{"name": "text", "type": "text", "tokenizer": "char",
                       "max_length": 40}],
           "outputs": [{"name": "next", "type": "next_token", "input": "text"}],
           "model": {"family": "transformer", "causal": True, "d_model": 32, "heads": 2,
                     "layers": 1, "dropout": 0.0},
           "train": {"epochs": 30, "batch_size": 8, "progress": "quiet", "threads": 1,
                     "optimizer": {"lr": 0.01}}}
    run = lw.train(cfg, output=tmp_path / "run")
    test = json.loads((tmp_path / "run" / "metrics.json").read_text())["test"]
    assert test["nats_per_token"] < 1.0 and test["tokens"] > 0
    model = lw.load(run.model_dir)
    out = model.generate("and god said", 12, greedy=True)
    assert out.startswith("and god said") and len(out) == len("and god said") + 12
    beam = model.generate("and god said", 12, beams=2)
    assert beam.startswith("and god said") and len(beam) == len(out)
    assert model.predict(["let there be ligh"])[0]["next"] == "t"
    assert main(["generate", str(run.model_dir), "--prompt", "and", "--max-tokens", "5",
                 "--seed", "0"]) == 0
    with pytest.raises(ConfigError, match="beams >= 1"):
        model.generate("x", 5, beams=0)


def test_validation_of_texts_of_different_lengths(tmp_path: Path) -> None:
    """Regression: validation batches cut to different lengths could not be concatenated;
    the Trainer now keeps per-row sums of a language model's outputs, not its logits."""
    words = "in the beginning god created the heaven and the earth".split()
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(words, size=int(rng.integers(1, 9)))) for _ in range(120)]
    path = tmp_path / "lines.csv"
    path.write_text("text\n" + "".join(f"{line}\n" for line in lines))
    cfg = {"name": "lm", "data": {"path": str(path), "split": {"validation": 0.5,
                                                                "test": 0.1}},
           "inputs": [{"name": "text", "type": "text", "tokenizer": "char",
                       "max_length": 60}],
           "outputs": [{"name": "next", "type": "next_token", "input": "text"}],
           "model": {"family": "transformer", "causal": True, "d_model": 16, "heads": 2,
                     "layers": 1, "dropout": 0.0},
           "train": {"epochs": 1, "batch_size": 4, "progress": "quiet", "threads": 1}}
    run = lw.train(cfg, output=tmp_path / "run")  # 60 validation rows: 4 batches of 16
    last = run.history[-1]
    assert math.isfinite(last["val_loss"]) and 0.0 <= last["val_accuracy"] <= 1.0
    assert last["val_nats_per_token"] == pytest.approx(
        run.metrics["validation"]["nats_per_token"], rel=1e-4)
