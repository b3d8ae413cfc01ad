"""Sequence to sequence: the dates data set, the sequence output, the encoder-decoder's
decoding (cache, beams), and a tiny model trained end to end, saved, loaded and run on
raw (and awkward) strings."""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import TypeAdapter
from typer.testing import CliRunner

import layerwise as lw
from layerwise.cli import app
from layerwise.config import ModelConfig, SequenceOutput, parse
from layerwise.data import dates
from layerwise.data.seq2seq import SequenceEncoder
from layerwise.errors import ConfigError, DataError
from layerwise.inference import seq2seq
from layerwise.inference.predictor import Predictor
from layerwise.models import build_model
from tests.model_helpers import in_memory_and_loaded

AWKWARD = ["", "☃☃ never seen ☃☃", "abc" * 300, "ABC"]


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


# ---------------------------------------------------------------- the dates data set


def test_dates_are_deterministic_and_read_one_way() -> None:
    a, b, c = dates.generate(200, seed=3), dates.generate(200, seed=3), dates.generate(200, 4)
    assert a == b and a != c
    assert dates.generate(3, seed=0) == {  # pinned: a change of generator shows here
        "text": ["11th of June 2034", "November 22, 1975", "05-19-2028"],
        "iso": ["2034-06-11", "1975-11-22", "2028-05-19"],
        "format": ["dth of Month yyyy", "Month d, yyyy", "mm-dd-yyyy"]}
    d = dt.date(1999, 3, 4)  # a Thursday; day 4, month 3: every format has one reading
    written = {name: fmt(d) for name, fmt in dates.FORMATS.items()}
    assert written["dd/mm/yy"] == "04/03/99" and written["mm-dd-yyyy"] == "03-04-1999"
    assert written["d.m.yy"] == "4.3.99" and written["yyyy/m/d"] == "1999/3/4"
    assert written["dth of Month yyyy"] == "4th of March 1999"
    assert written["Dow d Mon yyyy"] == "Thu 4 Mar 1999"
    assert dates.FORMATS["d Mon yy"](dt.date(2003, 1, 22)) == "22 Jan 03"  # 00-49 → 20yy
    assert [dates._ordinal(n) for n in (1, 2, 3, 11, 12, 13, 21, 22, 23, 31)] == \
        ["1st", "2nd", "3rd", "11th", "12th", "13th", "21st", "22nd", "23rd", "31st"]


def test_the_test_part_holds_days_never_seen_in_training() -> None:
    parts = dates.parts(n_train=3000, n_test=500, seed=0)
    train, test = set(parts["train"]["iso"]), set(parts["test"]["iso"])
    assert not train & test
    assert all(dates.FIRST.isoformat() <= d <= dates.LAST.isoformat() for d in train | test)
    # the catalogue entry is the default parts, identical on every call
    from layerwise.data import catalogue

    one, two = catalogue.load("dates"), catalogue.load("dates")
    assert len(one["train"]) == 30_000 and len(one["test"]) == 3_000
    assert list(one["test"].columns["text"][:50]) == list(two["test"].columns["text"][:50])


# ---------------------------------------------------------------- config and encoding


def test_config_ties_sequence_outputs_to_the_seq2seq_family() -> None:
    base = {"data": {"dataset": "dates"},
            "inputs": [{"name": "text", "type": "text", "tokenizer": "char"}],
            "outputs": [{"name": "iso", "type": "sequence"}],
            "model": {"family": "seq2seq", "d_model": 16, "heads": 2}}
    assert parse(base).outputs[0].type == "sequence"
    with pytest.raises(ConfigError, match="sequence-to-sequence"):
        parse({**base, "model": {"family": "transformer"}})
    with pytest.raises(ConfigError, match="sequence-to-sequence"):
        parse({**base, "outputs": [{"name": "iso", "type": "category"}]})
    with pytest.raises(ConfigError, match="sequence-to-sequence"):
        parse({**base, "inputs": base["inputs"] + [{"name": "format", "type": "category"}]})


def test_targets_are_framed_by_bos_and_eos_and_long_ones_lose_the_eos() -> None:
    enc = SequenceEncoder(SequenceOutput(name="y", type="sequence", max_length=4))
    enc.fit(np.array(["ab", "ba", "abba"], dtype=object))
    rows = enc.transform(np.array(["ab", "", "abbab"], dtype=object))
    bos, eos, a, b = enc.bos_id, enc.eos_id, enc._index["a"], enc._index["b"]
    assert rows.tolist() == [[bos, a, b, eos, 0, 0], [bos, eos, 0, 0, 0, 0],
                             [bos, a, b, b, a, 0]]  # truncated: no <eos>
    assert enc.decode(rows[0].tolist()) == "ab" and enc.decode(rows[1].tolist()) == ""
    assert enc.describe() == {"vocab_size": 6, "max_length": 4, "pad_id": 0, "bos_id": 4,
                              "eos_id": 5}
    assert enc.reference(np.array(["ab", "abbab"], dtype=object))["truncated"] == 1


# ---------------------------------------------------------------- the model on its own

DESC: dict[str, Any] = {
    "numeric_dim": 0, "category_sizes": [], "category_dims": [], "images": {},
    "texts": {"src": {"vocab_size": 12, "max_length": 9, "pad_id": 0}},
    "sequences": {"tgt": {"vocab_size": 9, "max_length": 6, "pad_id": 0, "bos_id": 7,
                          "eos_id": 8}},
    "outputs": {"tgt": ("sequence", 1)},
}


def untrained(positions: str) -> Any:
    cfg = TypeAdapter(ModelConfig).validate_python(
        {"family": "seq2seq", "d_model": 16, "heads": 2, "encoder_layers": 1,
         "decoder_layers": 2, "positions": positions, "dropout": 0.1})
    torch.manual_seed(0)
    model = build_model(cfg, [SequenceOutput(name="tgt", type="sequence", max_length=6)], DESC)
    with torch.no_grad():  # sharper than the 0.02-std initialisation: decoding branches
        for p in model.parameters():
            p.mul_(20.0)
    return model.eval()


def source(n: int = 5) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    lengths = torch.randint(1, 10, (n,), generator=g)
    ids = torch.randint(1, 12, (n, 9), generator=g)
    ids[torch.arange(9)[None, :] >= lengths[:, None]] = 0
    return {"ids": ids, "lengths": lengths}


def score(model: Any, src: dict[str, torch.Tensor], ids: list[list[int]]) -> torch.Tensor:
    """Teacher-forced total log-probability of each output (its <eos> included)."""
    bb = model.backbone
    rows = bb.teacher_ids(ids)
    with torch.no_grad():
        logits = model({"src": src, "tgt": rows})["tgt"].float()
    logits[..., [bb.pad, bb.bos]] = float("-inf")
    lp = logits.log_softmax(-1).gather(2, rows[:, 1:, None])[..., 0]
    keep = rows[:, 1:] != 0
    return torch.where(keep, lp, 0.0).sum(1)


@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "rotary"])
def test_cached_greedy_equals_uncached_and_one_beam_equals_greedy(positions: str) -> None:
    model, src = untrained(positions), source()
    bb = model.backbone
    greedy, s1 = bb.generate(src)
    uncached, s2 = bb.generate(src, use_cache=False)
    one_beam, s3 = bb.generate(src, beams=1)
    assert greedy == uncached == one_beam and np.allclose(s1, s2, atol=1e-4)
    assert len({tuple(g) for g in greedy}) > 1  # the rows really differ
    # reported scores are the log-probabilities of the returned outputs
    assert np.allclose(s1, score(model, src, greedy).tolist(), atol=1e-3)
    beam, sb = bb.generate(src, beams=3)
    beam_nc, _ = bb.generate(src, beams=3, use_cache=False)
    assert beam == beam_nc
    assert np.allclose(sb, score(model, src, beam).tolist(), atol=1e-3)
    assert all(b >= g - 1e-4 for b, g in zip(sb, s1))  # here beam finds at least greedy's
    # a row decodes the same alone as in a batch (source padding is never read)
    alone = [bb.generate({k: v[i: i + 1] for k, v in src.items()})[0][0] for i in range(5)]
    assert alone == greedy


def test_generating_first_does_not_break_training_later() -> None:
    from layerwise.models.transformer import _rotary_table

    _rotary_table.cache_clear()  # rotary tables first built under inference mode
    model, src = untrained("rotary"), source()
    model.backbone.generate(src)
    model.train()
    out = model({"src": src, "tgt": torch.randint(1, 7, (5, 8))})["tgt"]
    out.sum().backward()  # raised "Inference tensors cannot be saved for backward"


def test_decoder_never_sees_the_future_and_cross_attention_is_retrievable() -> None:
    model, src = untrained("rotary"), source()
    rows = torch.randint(1, 7, (5, 8))
    out = model({"src": src, "tgt": rows})["tgt"]
    changed = rows.clone()
    changed[:, 4:] = 1
    out2 = model({"src": src, "tgt": changed})["tgt"]
    assert torch.allclose(out[:, :4], out2[:, :4], atol=1e-5)   # positions < 4 unchanged
    maps = model.backbone.attention_maps({"src": src, "tgt": rows})
    cross = maps["cross"]
    assert len(cross) == 2 and cross[0].shape == (5, 2, 7, int(src["lengths"].max()))
    assert torch.allclose(cross[0].sum(-1), torch.ones(5, 2, 7), atol=1e-5)
    pad = torch.arange(cross[0].shape[-1])[None, :] >= src["lengths"][:, None]  # [B, S]
    assert float(cross[1].masked_select(pad[:, None, None, :].expand_as(cross[1])).sum()) == 0


# ---------------------------------------------------------------- trained end to end


def copy_task(path: Path, n: int = 600) -> Path:
    """Lower-case letters → the same letters in upper case (a different target vocabulary)."""
    rng = random.Random(0)
    lines = ["src,tgt"]
    for _ in range(n):
        w = "".join(rng.choice("abcdef") for _ in range(rng.randint(2, 5)))
        lines.append(f"{w},{w.upper()}")
    path.write_text("\n".join(lines) + "\n")
    return path


def tiny_config(data: Path) -> dict[str, Any]:
    return {"name": "copy", "seed": 0, "data": {"path": str(data)},
            "inputs": [{"name": "src", "type": "text", "tokenizer": "char", "max_length": 8}],
            "outputs": [{"name": "tgt", "type": "sequence", "max_length": 6}],
            "model": {"family": "seq2seq", "d_model": 32, "heads": 2, "encoder_layers": 1,
                      "decoder_layers": 1, "dropout": 0.0},
            "train": {"epochs": 10, "batch_size": 16, "threads": 1, "progress": "quiet",
                      "checkpoint_every": 0, "optimizer": {"lr": 0.003}}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    tmp = tmp_path_factory.mktemp("seq2seq")
    torch.set_num_threads(1)
    run = lw.train(tiny_config(copy_task(tmp / "copy.csv")), output=tmp / "run")
    return run, tmp


def test_a_tiny_model_learns_and_reports_exact_match(trained: tuple[Any, Path]) -> None:
    run, _ = trained
    metrics = json.loads((run.dir / "metrics.json").read_text())
    test = metrics["test"]
    assert test["exact_match"] >= 0.9 and test["count"] == 120
    assert {"token_accuracy", "nats_per_token", "beams"} <= set(test)
    meta = json.loads((run.model_dir / "layerwise.json").read_text())
    out = meta["schema"]["outputs"][0]
    assert out["type"] == "sequence" and "A" in out["state"]["vocab"]
    assert meta["metrics"]["test"]["exact_match"] == test["exact_match"]
    # teacher-forced exact match (validation, during training) equals decoded exact match
    tf = [h["val_exact_match"] for h in run.history][-1]
    assert tf == pytest.approx(metrics["validation"]["exact_match"])


def test_a_loaded_model_predicts_like_the_in_memory_one_on_raw_strings(
        trained: tuple[Any, Path]) -> None:
    run, tmp = trained
    in_memory, loaded_copy = in_memory_and_loaded(parse(tiny_config(tmp / "copy.csv")), tmp)
    texts = ["abc", "fed", "ab", "cafe"] + AWKWARD
    a, b = in_memory.predict(texts), loaded_copy.predict(texts)
    assert [p["tgt"] for p in a] == [p["tgt"] for p in b]
    assert np.allclose([p["tgt_probability"] for p in a], [p["tgt_probability"] for p in b])
    # the trained model: right answers, and one row at a time gives the batch's answer
    loaded = Predictor.load(run.model_dir)
    batch = [p["tgt"] for p in loaded.predict(texts)]
    assert batch[:4] == ["ABC", "FED", "AB", "CAFE"]
    assert [loaded.predict([t])[0]["tgt"] for t in texts] == batch
    assert loaded.generate("bead") == "BEAD" == loaded.generate("bead", beams=4)
    assert loaded.generate("bead", temperature=0.5, seed=0) == "BEAD"
    assert loaded.generate("bead", max_tokens=2) == "BE"


def test_awkward_inputs_have_defined_answers(trained: tuple[Any, Path]) -> None:
    run, _ = trained
    m = Predictor.load(run.model_dir)
    preds = m.predict(AWKWARD)  # empty → one <unk>; unseen → <unk>; too long → truncated
    assert len(preds) == 4 and all(isinstance(p["tgt"], str) for p in preds)
    assert all(len(p["tgt"]) <= 6 and 0 <= p["tgt_probability"] <= 1 for p in preds)
    assert preds[2]["tgt"] == m.predict(["abc" * 3])[0]["tgt"][:6]  # the start is kept
    with pytest.raises(DataError, match="row 2.*src|src.*row 2"):
        m.predict([{"src": "abc"}, {"src": None}])


def test_cross_attention_of_a_prediction(trained: tuple[Any, Path]) -> None:
    run, _ = trained
    got = seq2seq.attention(Predictor.load(run.model_dir), "cab")
    assert got["output"] == "CAB" and got["source_tokens"] == ["c", "a", "b"]
    assert got["output_tokens"] == ["C", "A", "B", "<eos>"]
    last = got["cross"][-1]
    assert last.shape == (2, 4, 3)
    assert torch.allclose(last.sum(-1), torch.ones(2, 4), atol=1e-5)


def test_cli_generate_predict_and_evaluate(trained: tuple[Any, Path]) -> None:
    run, tmp = trained
    cli = CliRunner()
    out = cli.invoke(app, ["generate", str(run.model_dir), "--prompt", "dab"])
    assert out.exit_code == 0, out.output
    assert out.stdout.strip() == "DAB"
    rows = tmp / "rows.csv"
    rows.write_text("src\nface\nbad\n")
    out = cli.invoke(app, ["predict", str(run.model_dir), str(rows)])
    assert out.exit_code == 0, out.output
    assert [json.loads(line)["tgt"] for line in out.stdout.splitlines()] == ["FACE", "BAD"]
    ev = lw.evaluate(run.model_dir)
    assert ev["exact_match"] == json.loads((run.dir / "metrics.json").read_text())[
        "test"]["exact_match"]
