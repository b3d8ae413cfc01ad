"""Compression and backends for generating models: the char LM's decoding step per backend
(the exported step graph equals the eager step), generation through a backend, the guard on
nats per token (lower is better), bench on a language model, and seq2seq children."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import TypeAdapter

import layerwise as lw
from layerwise.compress import AccuracyGuardError, Options, compress
from layerwise.compress.bench import bench
from layerwise.compress.bench_lm import greedy, is_language_model, step_loss
from layerwise.compress.guard import check, loss_of, main_metric, score, validation_data
from layerwise.config import ModelConfig, NextTokenOutput
from layerwise.inference.lm_steps import GraphStep, StepGraph, stepper
from layerwise.inference.predictor import Predictor
from layerwise.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

V = 12
DESC: dict[str, Any] = {"numeric_dim": 0, "category_sizes": [], "category_dims": [],
                        "images": {}, "texts": {"text": {"vocab_size": V, "max_length": 16,
                                                         "pad_id": 0}},
                        "outputs": {"next": ("next_token", V)}}


def lm(positions: str) -> Any:
    cfg = TypeAdapter(ModelConfig).validate_python(
        {"family": "transformer", "causal": True, "d_model": 16, "heads": 2, "layers": 2,
         "dropout": 0.0, "positions": positions})
    torch.manual_seed(0)
    return build_model(cfg, [NextTokenOutput(name="next", type="next_token", input="text")],
                       DESC).eval()


@pytest.mark.parametrize("positions", ["rotary", "learned", "sinusoidal"])
def test_step_graph_equals_the_eager_cached_step(positions: str) -> None:
    """The graph that export traces: the same logits and caches as TextTransformer.step."""
    enc = lm(positions).backbone.encoders["text"]
    ids = torch.randint(1, V, (3, 6))
    with torch.no_grad():
        caches: list[dict[str, torch.Tensor]] = [{} for _ in enc.blocks]
        enc.step(ids[:, :5], caches, 0)
        past = [t for c in caches for t in (c["k"], c["v"])]
        want = enc.step(ids[:, 5:], caches, 5)[:, 0]
        got = StepGraph(enc)(ids[:, 5:], torch.tensor([5]), *past)
    torch.testing.assert_close(got[0], want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[1], caches[0]["k"], atol=1e-5, rtol=1e-5)
    assert got[1].shape[2] == 6 and len(got) == 1 + 2 * len(enc.blocks)


def test_graph_step_primes_eagerly_and_steps_through_its_runner() -> None:
    """The prompt (no cache yet) runs eager; every single-token step goes to the runner."""
    enc = lm("rotary").backbone.encoders["text"]
    calls: list[int] = []
    graph = StepGraph(enc)

    def run(*tensors: torch.Tensor) -> Any:
        calls.append(int(tensors[1]))
        return graph(*tensors)
    step = GraphStep(enc, run)
    with torch.no_grad():
        caches: list[dict[str, torch.Tensor]] = [{} for _ in enc.blocks]
        first = step(torch.tensor([[3, 4, 5]]), caches, 0)
        nxt = step(torch.tensor([[6]]), caches, 3)
        ref: list[dict[str, torch.Tensor]] = [{} for _ in enc.blocks]
        enc.step(torch.tensor([[3, 4, 5]]), ref, 0)
        want = enc.step(torch.tensor([[6]]), ref, 3)
    assert first.shape == (1, 3, V) and calls == [3]
    torch.testing.assert_close(nxt, want, atol=1e-5, rtol=1e-5)
    assert caches[0]["k"].shape[2] == 4


def test_bf16_step_runs_in_bfloat16_and_returns_float() -> None:
    model = lm("rotary")
    step = stepper("bf16", model.backbone, None)
    caches: list[dict[str, torch.Tensor]] = [{} for _ in range(2)]
    with torch.no_grad():
        out = step(torch.tensor([[3, 4]]), caches, 0)
    assert out.dtype == torch.float32 and caches[0]["k"].dtype == torch.bfloat16


def test_onnx_step_without_a_directory_is_a_clear_error() -> None:
    with pytest.raises(lw.errors.ConfigError, match="loaded from its directory"):
        stepper("onnxruntime", lm("rotary").backbone, None)


def test_guard_on_a_lower_is_better_metric_compares_the_rise() -> None:
    assert loss_of("nats_per_token", 1.00, 1.05) == pytest.approx(0.05)
    assert loss_of("accuracy", 93.0, 92.5) == pytest.approx(0.5)
    check("nats_per_token", 1.2, 1.21, 0.02, "int8")              # within: passes
    check("nats_per_token", 1.2, 1.0, 0.0, "int8")                # better: passes
    with pytest.raises(AccuracyGuardError, match=r"raises nats_per_token from 1\.2000 to "
                       r"1\.2500 \(0\.0500 > --max-drop 0\.02\)"):
        check("nats_per_token", 1.2, 1.25, 0.02, "int8")


# ------------------------------------------------------- a trained tiny char LM (slow)
VERSE = "and god said let there be light and there was light. "


@pytest.fixture(scope="module")
def char_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("lm")
    path = tmp / "lines.csv"
    path.write_text("text\n" + "".join(f"{VERSE[i:] + VERSE[:i]}\n" for i in range(0, 50, 2)))
    cfg = {"name": "lm", "data": {"path": str(path), "split": {"validation": 0.2}},
           "inputs": [{"name": "text", "type": "text", "tokenizer": "char",
                       "max_length": 40}],
           "outputs": [{"name": "next", "type": "next_token", "input": "text"}],
           "model": {"family": "transformer", "causal": True, "d_model": 32, "heads": 2,
                     "layers": 2, "dropout": 0.0},
           "train": {"epochs": 8, "batch_size": 8, "progress": "quiet", "threads": 1,
                     "optimizer": {"lr": 0.01}}}
    lw.train(cfg, output=tmp / "run")
    return tmp / "run" / "model"


@pytest.mark.slow
def test_char_lm_generates_through_the_onnx_step_graphs(char_lm: Path) -> None:
    eager = Predictor.load(char_lm, backend="eager")
    ort = Predictor.load(char_lm, backend="onnxruntime")
    q = Predictor.load(char_lm, backend="onnxruntime-int8")
    assert is_language_model(eager)
    prompt = "and god said"
    assert ort.generate(prompt, 20, greedy=True) == eager.generate(prompt, 20, greedy=True)
    start = torch.tensor([[3, 4, 5, 6]] * 2)
    assert torch.equal(greedy(ort, start, 8), greedy(eager, start, 8))
    rows = validation_data(eager)
    base = step_loss(eager, rows)
    assert base == pytest.approx(score(eager, rows, "nats_per_token"), abs=1e-3)
    assert abs(step_loss(q, rows) - base) < 0.05     # int8 keeps the loss
    assert len(q.generate(prompt, 10)) == len(prompt) + 10


@pytest.mark.slow
def test_char_lm_int8_child_is_guarded_on_nats_and_benched_on_generation(
        char_lm: Path, tmp_path: Path) -> None:
    eager = Predictor.load(char_lm, backend="eager")
    assert main_metric(eager) == "nats_per_token"
    rec = compress(char_lm, "int8", tmp_path / "int8", Options(max_drop=0.05))
    assert rec["metric"]["name"] == "nats_per_token" and rec["backend"] == "onnxruntime-int8"
    assert rec["metric"]["child"] - rec["metric"]["parent"] <= 0.05
    child = Predictor.load(tmp_path / "int8")
    assert child.backend == "onnxruntime-int8"
    assert child.generate("and", 5, greedy=True).startswith("and")
    res = bench(tmp_path / "int8", names=("eager", "onnxruntime-int8"), rounds=1,
                seconds=0.0, batches=(1, 8, 64), max_drop=0.05)
    for name in ("eager", "onnxruntime-int8"):
        r = res["backends"][name]
        assert set(r["batches"]) == {1, 8} and r["batches"][1]["tokens_per_s"] > 0
        assert "step_nats_per_token" in r and 0 <= r["greedy_agreement"] <= 1
    assert res["pick"] in ("eager", "onnxruntime-int8")


# ------------------------------------------------------------------------------ seq2seq
class _SameName(torch.nn.Module):
    """Reads ``y`` and returns ``y``: a seq2seq model's target is both (teacher forcing)."""

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"y": inputs["y"] * 2.0, "z": inputs["x"] + 1.0}


def test_an_output_named_like_an_input_gets_a_distinct_graph_name(tmp_path: Path) -> None:
    from layerwise.inference import onnx as lo

    x = {"x": torch.randn(3, 4), "y": torch.randn(3, 2)}
    path = lo.export(_SameName(), x, tmp_path / "m.onnx")
    runner = lo.OnnxRunner(path)
    names = [o.name for o in runner.session.get_outputs()]
    assert names == ["y" + lo.CLASH, "z"] and runner.outputs == ["y", "z"]
    out = runner(x)
    torch.testing.assert_close(out["y"], x["y"] * 2.0)
    torch.testing.assert_close(out["z"], x["x"] + 1.0)


@pytest.mark.slow
def test_seq2seq_children_are_guarded_on_exact_match_and_benched(tmp_path: Path) -> None:
    from tests.test_seq2seq import copy_task, tiny_config

    torch.set_num_threads(1)
    run = lw.train(tiny_config(copy_task(tmp_path / "copy.csv")), output=tmp_path / "run")
    parent = Predictor.load(run.model_dir, backend="eager")
    assert main_metric(parent) == "exact_match"
    rows = validation_data(parent)
    before = score(parent, rows, "exact_match")
    for method, backend in (("int8", "onnxruntime-int8"), ("bf16", "bf16")):
        rec = compress(run.model_dir, method, tmp_path / method, Options(max_drop=5))
        assert rec["metric"]["name"] == "exact_match" and rec["backend"] == backend
        assert rec["metric"]["parent"] == pytest.approx(before, abs=1e-3)
        assert before - rec["metric"]["child"] <= 5
        child = Predictor.load(tmp_path / method)
        assert child.backend == backend and len(child.predict(["abc"])) == 1
    res = bench(run.model_dir, names=("eager", "onnxruntime"), batches=(1, 8), rounds=1,
                seconds=0.0)
    assert res["backends"]["onnxruntime"]["max_abs_diff"] < 1e-3
    assert res["backends"]["onnxruntime"]["batches"][8]["calls"] >= 3
