"""Compression and backends: ONNX export checked against eager (and run without
layerwise), backends by name, the accuracy guard, structured pruning, int8/bf16 storage,
distillation and autotune. Tiny wine MLPs; the sequence exports are marked slow."""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import layerwise as lw
from layerwise import artifact as art
from layerwise.cli import main
from layerwise.compress import AccuracyGuardError, Options, bench, compress, export
from layerwise.compress.bench import pick, relative
from layerwise.compress.distill import DistillTrainer, student_config
from layerwise.compress.guard import validation_data
from layerwise.config import parse
from layerwise.errors import ArtifactError, UnknownNameError
from layerwise.inference import onnx as lo
from layerwise.inference.backends import (
    BACKENDS,
    default_backend,
    machine_key,
    resolved,
    weights_hash,
)
from layerwise.inference.predictor import Predictor
from tests.conftest import TINY_MLP

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


@pytest.fixture(scope="module")
def parent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wine MLP that has learned (≈ 94% validation accuracy), trained once."""
    cfg = copy.deepcopy(TINY_MLP)
    cfg["model"]["hidden"] = [32, 32]
    cfg["train"].update(epochs=15, optimizer={"name": "adamw", "lr": 0.01})
    out = tmp_path_factory.mktemp("compress") / "run"
    lw.train(cfg, output=out)
    return out / "model"


@pytest.fixture
def model(parent: Path, tmp_path: Path) -> Path:
    """A fresh copy of the parent per test (export and autotune write into it)."""
    import shutil

    dst = tmp_path / "model"
    shutil.copytree(parent, dst)
    return dst


def folder_digest(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- export
PLAIN_ORT = """
import json, sys
import numpy as np
import onnxruntime as ort
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
x = np.load(sys.argv[2])
out = s.run(None, {s.get_inputs()[0].name: x})[0]
print(json.dumps({"layerwise_imported": any(m.startswith("layerwise") for m in sys.modules),
                  "inputs": [i.name for i in s.get_inputs()], "out": out.tolist()}))
"""


def test_exported_graph_runs_in_plain_onnxruntime_without_layerwise(model: Path,
                                                                    tmp_path: Path) -> None:
    rec = export(model)
    graph = model / "model.onnx"
    assert graph.is_file() and rec["max_abs_diff"] < 1e-4
    assert art.read_header(model)["onnx"]["weights"] == weights_hash(model)
    pred = Predictor.load(model)
    rows = validation_data(pred)
    x = rows.inputs["numeric"][:5].numpy()  # the tabular inputs in one [B, k] tensor
    np.save(tmp_path / "x.npy", x)
    done = subprocess.run([sys.executable, "-c", PLAIN_ORT, str(graph), str(tmp_path / "x.npy")],
                          capture_output=True, text=True, check=True, cwd=tmp_path)
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["layerwise_imported"] is False and got["inputs"] == ["numeric"]
    want = pred.forward(rows.subset(torch.arange(5)))["target"].numpy()
    np.testing.assert_allclose(np.array(got["out"]), want, atol=1e-5)
    assert len(np.array(got["out"])) == 5  # batch 5 through a graph exported at 256 rows


def test_int8_backend_quantizes_the_artifacts_own_exported_graph(model: Path) -> None:
    export(model)  # the fp32 graph is now the artifact's model.onnx, not a cached one
    pred = Predictor.load(model, backend="onnxruntime-int8")
    out = pred.forward(validation_data(pred))["target"]
    assert out.shape[1] == 3 and torch.isfinite(out).all()


def test_export_refuses_a_graph_that_does_not_match_eager(model: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    real = lo.OnnxRunner.__call__
    monkeypatch.setattr(lo.OnnxRunner, "__call__",
                        lambda self, x: {k: v + 0.5 for k, v in real(self, x).items()})
    with pytest.raises(ArtifactError, match=r"does not match the model: largest output "
                                            r"difference 0\.5"):
        export(model)
    assert not (model / "model.onnx").exists()
    assert "onnx" not in art.read_header(model)


def test_export_cli_refuses_an_unknown_format(model: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(model), "--format", "tflite"]) == 2
    assert "unknown export format 'tflite'; valid: onnx" in capsys.readouterr().err


# --------------------------------------------------------------------------- backends
@pytest.mark.parametrize("name", ["onnxruntime", "onnxruntime-int8", "bf16"])
def test_backends_by_name_predict_like_eager(model: Path, name: str) -> None:
    eager = Predictor.load(model, backend="eager")
    rows = validation_data(eager)
    want = eager.forward(rows)["target"]
    other = Predictor.load(model, backend=name)
    assert other.backend == name
    got = other.forward(rows)["target"]
    tol = 1e-4 if name == "onnxruntime" else 0.1
    assert (got - want).abs().max() < tol
    assert (got.argmax(1) == want.argmax(1)).float().mean() > 0.95


def test_unknown_backend_is_a_clear_error(model: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UnknownNameError, match="unknown backend 'tensorrt'; valid: eager, "
                                               "compiled, bf16, onnxruntime, "
                                               "onnxruntime-int8"):
        Predictor.load(model, backend="tensorrt")
    rows = Path(model).parent / "rows.csv"
    rows.write_text("alcohol,malic_acid,ash,flavanoids,color_intensity,proline\n"
                    "13.2,1.8,2.4,2.9,5.6,1050\n")
    assert main(["predict", str(model), str(rows), "--backend", "tensorrt"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown backend 'tensorrt'" in err


def test_predict_cli_runs_a_backend_by_name(model: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    rows = Path(model).parent / "rows.csv"
    rows.write_text("alcohol,malic_acid,ash,flavanoids,color_intensity,proline\n"
                    "13.2,1.8,2.4,2.9,5.6,1050\n")
    assert main(["predict", str(model), str(rows), "--backend", "onnxruntime"]) == 0
    got = json.loads(capsys.readouterr().out.splitlines()[0])
    want = Predictor.load(model).predict(str(rows))[0]
    assert got["target"] == want["target"]
    assert got["target_probability"] == pytest.approx(want["target_probability"], abs=1e-5)


def test_autotune_records_its_pick_and_predict_uses_it(model: Path) -> None:
    res = bench(model, names=("eager", "onnxruntime"), batches=(1, 8), rounds=1,
                seconds=0.01, autotune=True, for_batch=8)
    for name in ("eager", "onnxruntime"):
        stats = res["backends"][name]["batches"][8]
        assert stats["calls"] >= 3 and stats["p99_ms"] >= stats["median_ms"] > 0
    stored = art.read_header(model)["backends"][machine_key()]
    assert stored["pick"] == res["pick"] and stored["for_batch"] == 8
    one = len(set(res["by_batch"].values())) == 1   # else each batch size runs its own
    assert Predictor.load(model).backend == (res["pick"] if one else "auto")
    for name in ("eager", "onnxruntime"):  # paired per-round ratios to eager
        assert res["backends"][name]["batches"][8]["vs_eager"] > 0
    assert res["backends"]["eager"]["batches"][1]["vs_eager"] == 1.0


def test_relative_speed_is_paired_round_by_round() -> None:
    """Load that doubles between rounds cancels out of the per-round ratios."""
    timed = {"eager": {1: [[10.0, 10.0], [20.0], [40.0, 40.0, 40.0]]},
             "a": {1: [[8.0], [16.0, 16.0], [32.0]]},
             "b": {1: [[5.0], [30.0], [60.0]]}}
    ratios = relative(timed)
    assert ratios["eager"][1] == 1.0 and ratios["a"][1] == pytest.approx(0.8)
    assert ratios["b"][1] == pytest.approx(1.5)
    assert relative({"a": timed["a"]}) == {}  # no reference: no ratios


def test_pick_prefers_the_paired_ratio_over_pooled_medians() -> None:
    report = {"eager": {"eligible": True, "batches": {1: {"median_ms": 3.0, "vs_eager": 1.0}}},
              "a": {"eligible": True, "batches": {1: {"median_ms": 1.0, "vs_eager": 0.9}}},
              "b": {"eligible": True, "batches": {1: {"median_ms": 2.0, "vs_eager": 0.5}}}}
    assert pick(report, 1) == "b"


def test_auto_backend_runs_each_batch_sizes_pick(model: Path) -> None:
    """Autotune's picks per batch size differ → ``auto``: each call runs the pick of the
    nearest measured batch size at or below its own."""
    kept = {machine_key(): {"pick": "eager", "for_batch": 8,
                            "by_batch": {"1": "bf16", "8": "eager"}}}
    art.update_meta(model, {"backends": kept})
    auto = Predictor.load(model)
    assert auto.backend == "auto" and default_backend(auto.meta) == "auto"
    assert resolved("auto", auto.meta) == "eager"
    rows = validation_data(auto)
    half, eager = Predictor.load(model, "bf16"), Predictor.load(model, "eager")
    assert len(rows) >= 9
    for n, like in ((1, half), (4, half), (8, eager), (len(rows), eager)):
        part = rows.subset(torch.arange(n))
        got, want = auto.forward(part)["target"], like.forward(part)["target"]
        assert torch.equal(got, want), n
    assert not torch.equal(half.forward(rows.subset(torch.arange(1)))["target"],
                           eager.forward(rows.subset(torch.arange(1)))["target"])


def test_pick_skips_an_unfaithful_backend() -> None:
    def entry(ms: float, ok: bool) -> dict[str, Any]:
        return {"eligible": ok, "batches": {64: {"median_ms": ms}}}

    report = {"eager": entry(3.0, True), "onnxruntime-int8": entry(1.0, False),
              "onnxruntime": entry(2.0, True)}
    assert pick(report, 64) == "onnxruntime"
    assert pick({"bf16": entry(1.0, False)}, 64) == "eager"


# ------------------------------------------------------------------------------ guard
def test_guard_refuses_pruning_95_percent_and_leaves_the_parent_untouched(
        model: Path, tmp_path: Path) -> None:
    before = folder_digest(model)
    out = tmp_path / "pruned95"
    with pytest.raises(AccuracyGuardError) as e:
        compress(model, "prune", out, Options(amount=0.95, epochs=0, max_drop=1.0))
    msg = str(e.value)
    parent_acc = 100 * Predictor.load(model).artifact.meta["metrics"]["validation"]["accuracy"]
    assert f"from {parent_acc:.2f} to " in msg and "points > --max-drop 1" in msg
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(
        ".pruned95")]
    assert folder_digest(model) == before


def test_guard_refusal_from_the_cli_exits_non_zero_with_both_figures(
        model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["compress", str(model), "--method", "prune", "--amount", "0.95",
                 "--epochs", "0", "--max-drop", "1", "--output", str(tmp_path / "p")])
    err = capsys.readouterr().err
    assert code == 2 and "accuracy guard: prune (amount=0.95, epochs=0, lr_scale=0.1) drops " \
                          "accuracy from" in err and err.count("\n") == 1
    assert not (tmp_path / "p").exists()


def test_unknown_method_is_a_clear_error(model: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown method 'zip'; valid: int8, int8-static, "
                                         "bf16, prune, distill"):
        compress(model, "zip", tmp_path / "z")


# ---------------------------------------------------------------------------- methods
def test_pruned_child_has_fewer_parameters_and_loads_as_an_artifact(
        model: Path, tmp_path: Path) -> None:
    rec = compress(model, "prune", tmp_path / "pruned",
                   Options(amount=0.5, epochs=1, max_drop=100))
    child = art.load(tmp_path / "pruned")
    n_child = sum(p.numel() for p in child.model.parameters())
    n_parent = sum(p.numel() for p in art.load(model).model.parameters())
    assert child.config.model.hidden == [16, 16]  # type: ignore[union-attr]
    assert n_child == rec["settings"]["parameters"]["child"] < n_parent / 2
    assert rec["parent_hash"] == weights_hash(model) and rec["method"] == "prune"
    assert child.meta["compression"]["metric"]["name"] == "accuracy"
    Predictor(child).predict({"alcohol": 13.2, "malic_acid": 1.8, "ash": 2.4,
                              "flavanoids": 2.9, "color_intensity": 5.6, "proline": 1050})


def test_int8_child_stores_int8_weights_and_runs_its_int8_graph(model: Path,
                                                                tmp_path: Path) -> None:
    from layerwise.files import load_safetensors

    rec = compress(model, "int8", tmp_path / "q", Options(max_drop=5))
    stored = load_safetensors(tmp_path / "q" / art.WEIGHTS)
    assert stored["backbone.body.3.weight"].dtype == torch.int8  # the 32x32 matrix
    assert rec["weights_bytes"]["child"] < rec["weights_bytes"]["parent"]
    child = Predictor.load(tmp_path / "q")
    assert child.backend == "onnxruntime-int8" and rec["backend"] == "onnxruntime-int8"
    w = child.model.state_dict()["backbone.body.3.weight"]
    parent_w = Predictor.load(model).model.state_dict()["backbone.body.3.weight"]
    assert 0 < (w - parent_w).abs().max() <= parent_w.abs().max() / 127  # on the int8 grid


def test_bf16_child_halves_the_weights(model: Path, tmp_path: Path) -> None:
    rec = compress(model, "bf16", tmp_path / "h", Options(max_drop=5))
    assert rec["weights_bytes"]["child"] < 0.6 * rec["weights_bytes"]["parent"]
    assert Predictor.load(tmp_path / "h").backend == "bf16"


def test_child_card_keeps_the_parents_and_adds_its_lineage(model: Path, tmp_path: Path
                                                            ) -> None:
    rec = compress(model, "bf16", tmp_path / "h", Options(max_drop=5))
    card = (tmp_path / "h" / "card.md").read_text(encoding="utf-8")
    parent_card = (model / "card.md").read_text(encoding="utf-8")
    assert card.startswith(parent_card.rstrip("\n"))
    assert "## Compression" in card and "method: bf16" in card
    assert rec["parent_hash"] in card and f"this model {rec['metric']['child']}" in card


def test_distillation_loss_and_derived_student(model: Path, tmp_path: Path) -> None:
    trainer = DistillTrainer(teacher=torch.nn.Identity(), temperature=2.0, alpha=0.5)
    logits = {"y": torch.randn(4, 3)}
    assert float(trainer.kd_loss(logits, logits)) == pytest.approx(0.0, abs=1e-6)
    assert float(trainer.kd_loss({"y": -logits["y"]}, logits)) > 0.1
    cfg = parse(art.read_meta(model)["config"])
    assert student_config(cfg, 0.25).model.hidden == [8, 8]  # type: ignore[union-attr]
    rec = compress(model, "distill", tmp_path / "s",
                   Options(width=0.25, epochs=2, max_drop=100))
    p = rec["settings"]["parameters"]
    assert p["student"] < p["teacher"] / 4
    assert art.load(tmp_path / "s").config.model.hidden == [8, 8]  # type: ignore[union-attr]



def test_a_student_config_with_column_globs_is_stored_expanded(model: Path, tmp_path: Path
                                                                ) -> None:
    """A --student file naming its inputs by a glob: the child stores the columns it read,
    so evaluating it later rebuilds its data (it once failed: 'not expanded yet')."""
    import yaml

    student = copy.deepcopy(TINY_MLP)
    student["inputs"] = [{"columns": ["alcohol", "malic_acid", "ash", "flavanoids",
                                      "color_int*", "proline"], "type": "numeric"}]
    path = tmp_path / "student.yaml"
    path.write_text(yaml.safe_dump(student), encoding="utf-8")
    compress(model, "distill", tmp_path / "s", Options(student=str(path), epochs=1,
                                                       max_drop=100))
    cfg = art.load(tmp_path / "s").config
    assert [i.name for i in cfg.inputs][4] == "color_intensity"
    assert 0.0 <= lw.evaluate(tmp_path / "s")["accuracy"] <= 1.0

# -------------------------------------------------------------- sequences (unpacked path)
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_unpacked_recurrent_run_equals_the_packed_one(cell: str) -> None:
    from pydantic import TypeAdapter

    from layerwise.config.supervised import ModelConfig
    from layerwise.models.rnn import SequenceEncoder, unpacked

    cfg = TypeAdapter(ModelConfig).validate_python(
        {"family": "rnn", "cell": cell, "embedding_dim": 6, "hidden": 5, "layers": 2,
         "bidirectional": True, "pooling": "max"})
    torch.manual_seed(0)
    enc = SequenceEncoder(cfg, vocab_size=20, pad_id=0).eval()  # type: ignore[arg-type]
    lengths = torch.tensor([7, 3, 1, 5])
    ids = torch.randint(1, 20, (4, 7)) * (torch.arange(7)[None] < lengths[:, None])
    with torch.no_grad():
        packed = enc.states({"ids": ids, "lengths": lengths})
        states, last = unpacked(enc.rnn, enc.embedding(ids), lengths)
        h_n = enc.rnn(torch.nn.utils.rnn.pack_padded_sequence(
            enc.embedding(ids), lengths, batch_first=True, enforce_sorted=False))[1]
    h_n = h_n[0] if isinstance(h_n, tuple) else h_n
    torch.testing.assert_close(states, packed, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(last, torch.cat(list(h_n[-2:]), dim=1), atol=1e-6, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("model_cfg", [
    {"family": "rnn", "cell": "lstm", "embedding_dim": 8, "hidden": 8, "bidirectional": True,
     "pooling": "max"},
    {"family": "transformer", "d_model": 8, "heads": 2, "layers": 1}], ids=["lstm", "tr"])
def test_text_models_export_and_match_eager_at_any_length(model_cfg: dict[str, Any],
                                                          tmp_path: Path) -> None:
    lines = ["text,label"] + [f"{'good fine' if i % 2 else 'bad awful'} day {'x ' * (i % 7)},"
                              f"{'pos' if i % 2 else 'neg'}" for i in range(60)]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    cfg = {"name": "t", "seed": 0, "data": {"path": str(tmp_path / "t.csv")},
           "inputs": [{"name": "text", "type": "text", "tokenizer": "word", "max_length": 12}],
           "outputs": [{"name": "label", "type": "category"}], "model": model_cfg,
           "train": {"epochs": 1, "batch_size": 16, "progress": "quiet", "threads": 1}}
    lw.train(cfg, output=tmp_path / "run")
    rec = export(tmp_path / "run" / "model")
    assert rec["max_abs_diff"] < 1e-4
    pred = Predictor.load(tmp_path / "run" / "model", backend="onnxruntime")
    texts = ["good", "bad awful day x x x x", "fine day"]
    want = Predictor.load(tmp_path / "run" / "model", backend="eager").predict(texts)
    got = pred.predict(texts)
    for g, w in zip(got, want, strict=True):
        assert g["label"] == w["label"]
        assert g["label_probability"] == pytest.approx(w["label_probability"], abs=1e-5)


def test_all_backends_are_documented() -> None:
    from layerwise.inference import backends

    assert all(name in (backends.__doc__ or "") for name in BACKENDS)


@pytest.mark.slow
def test_static_int8_cnn_stores_its_ranges_and_runs_a_qdq_graph(tmp_path: Path) -> None:
    import onnx

    from tests.conftest import TINY_CNN

    lw.train(copy.deepcopy(TINY_CNN), output=tmp_path / "run")
    rec = compress(tmp_path / "run" / "model", "int8-static", tmp_path / "q",
                   Options(max_drop=100))
    assert (tmp_path / "q" / "calibration.json").is_file()
    assert rec["settings"]["scheme"] == "static"
    child = Predictor.load(tmp_path / "q")
    assert child.backend == "onnxruntime-int8"
    rows = validation_data(child)
    eager = Predictor.load(tmp_path / "q", backend="eager").forward(rows)["label"]
    got = child.forward(rows)["label"]
    graph = child._runner._run.path  # type: ignore[attr-defined]
    assert graph.name == "model.int8-static.onnx"
    ops = {n.op_type for n in onnx.load(str(graph)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert (got.argmax(1) == eager.argmax(1)).float().mean() > 0.9


@pytest.mark.slow
def test_compiled_backend_matches_eager(model: Path) -> None:
    eager = Predictor.load(model, backend="eager")
    rows = validation_data(eager)
    compiled = Predictor.load(model, backend="compiled")
    torch.testing.assert_close(compiled.forward(rows)["target"], eager.forward(rows)["target"],
                               atol=1e-4, rtol=1e-4)
