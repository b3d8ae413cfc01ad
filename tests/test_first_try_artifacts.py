"""First-try problems a new user found: damaged weights, invalid JSON, output paths.

- Weights holding NaN or infinity are refused on load, naming the file and the tensor (a
  buffer may be NaN on purpose: an autoencoder's unset anomaly threshold still loads).
- What ``predict`` (and ``evaluate``) write is strict JSON: a non-finite number is ``null``.
- An output path that is a folder where a file is wanted, a file where a folder is wanted,
  or lies under a file, is one clear usage error (exit 2) before any work; nothing is lost.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from layerwise import artifact as art
from layerwise.api import Run, train
from layerwise.cli import main
from layerwise.errors import ArtifactError, ConfigError
from tests.conftest import TINY_MLP

NAN = float("nan")


def strict(text: str) -> Any:
    """Parse ``text`` as standard JSON: bare NaN / Infinity fail the test."""
    def refuse(constant: str) -> None:
        pytest.fail(f"not valid JSON: bare {constant} in {text!r}")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    cfg = copy.deepcopy(TINY_MLP)
    cfg["train"]["epochs"] = 1
    return train(cfg, output=tmp_path_factory.mktemp("first_try") / "run")


@pytest.fixture
def model_dir(run: Run, tmp_path: Path) -> Path:
    """A private copy of the model directory, free to damage."""
    return Path(shutil.copytree(run.model_dir, tmp_path / "model"))


@pytest.fixture
def rows_csv(tmp_path: Path) -> Path:
    from sklearn.datasets import load_wine

    path = tmp_path / "rows.csv"
    load_wine(as_frame=True).frame.head(3).to_csv(path, index=False)
    return path


def patch_weight(path: Path, name: str, value: float) -> None:
    """Overwrite the first float32 of tensor ``name`` in a safetensors file, in place."""
    blob = bytearray(path.read_bytes())
    (n,) = struct.unpack("<Q", blob[:8])
    start = json.loads(blob[8:8 + n])[name]["data_offsets"][0]
    blob[8 + n + start: 8 + n + start + 4] = struct.pack("<f", value)
    path.write_bytes(bytes(blob))


# -- 1. non-finite weights ----------------------------------------------------------------

@pytest.mark.parametrize("value", [NAN, math.inf, -math.inf])
def test_weights_holding_non_finite_values_are_refused_by_name(model_dir: Path,
                                                               value: float) -> None:
    patch_weight(model_dir / art.WEIGHTS, "backbone.body.0.weight", value)
    with pytest.raises(ArtifactError) as e:
        art.load(model_dir)
    msg = str(e.value)
    assert str(model_dir / art.WEIGHTS) in msg and "'backbone.body.0.weight'" in msg
    assert "non-finite" in msg


def test_cli_predict_on_nan_weights_is_one_error_line(model_dir: Path, rows_csv: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    patch_weight(model_dir / art.WEIGHTS, "heads.target.linear.bias", NAN)
    assert main(["predict", str(model_dir), str(rows_csv)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "NaN" not in out
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "'heads.target.linear.bias'" in err and "Traceback" not in err


def test_a_nan_buffer_is_not_a_damaged_weight(model_dir: Path) -> None:
    # a buffer (here the loss's class weights) is not checked, as checkpoints do not check
    # buffers: some are NaN on purpose
    patch_weight(model_dir / art.WEIGHTS, "heads.target.class_weight", NAN)
    art.load(model_dir)


def test_an_autoencoder_with_its_threshold_unset_saves_and_loads(tmp_path: Path) -> None:
    import torch

    from layerwise.api import build_for
    from layerwise.config import parse
    from layerwise.data.build import build

    cfg = parse({"name": "ae", "seed": 0, "data": {"dataset": "digits", "limit": 60},
                 "inputs": [{"name": "image", "type": "image"}],
                 "model": {"family": "autoencoder", "channels": [4], "bottleneck": 2},
                 "train": {"epochs": 1, "progress": "quiet"}})
    ds = build(cfg)
    model = build_for(cfg, ds)
    assert torch.isnan(model.threshold)  # type: ignore[arg-type]  # no anomaly: unset
    art.save(tmp_path / "ae", config=cfg, schema=ds.schema, model=model)
    assert torch.isnan(art.load(tmp_path / "ae").model.threshold)  # type: ignore[arg-type]


def test_check_finite_skips_integer_tensors_and_names_the_first_bad_one() -> None:
    import torch

    from layerwise.files import check_finite

    tensors = {"a": torch.ones(3), "b": torch.tensor([1.0, NAN]), "c": torch.arange(3)}
    check_finite(Path("w.safetensors"), tensors, ["a", "c"])
    with pytest.raises(ArtifactError, match=r"w.safetensors: weight 'b' holds 1 non-finite"):
        check_finite(Path("w.safetensors"), tensors, ["a", "b", "c"])


# -- 1b. strict JSON out --------------------------------------------------------------------

def test_dumps_json_writes_non_finite_numbers_as_null() -> None:
    from layerwise.files import dumps_json, finite_json

    value = {"p": NAN, "q": [1.5, math.inf, -math.inf], "r": np.float32(NAN),
             "s": np.array([0.5, NAN]), "t": "NaN", "u": np.int64(3), "v": Path("x")}
    assert strict(dumps_json(value)) == {"p": None, "q": [1.5, None, None], "r": None,
                                         "s": [0.5, None], "t": "NaN", "u": 3, "v": "x"}
    assert finite_json((1.0, NAN)) == [1.0, None]


@pytest.fixture
def nan_predictions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Predictions holding non-finite numbers (the load check keeps them from a real
    model; the writer must still never write bare NaN)."""
    from layerwise.inference.predictor import Predictor

    def predict(self: Any, rows: Any, batch_size: int = 1024) -> list[dict[str, Any]]:
        return [{"target": "class_0", "target_probability": NAN,
                 "target_probabilities": {"class_0": math.inf, "class_1": 0.25},
                 "score": np.float32(NAN)}]

    monkeypatch.setattr(Predictor, "predict", predict)


@pytest.mark.usefixtures("nan_predictions")
def test_predict_writes_non_finite_numbers_as_null(model_dir: Path, rows_csv: Path,
                                                   tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    want = {"target": "class_0", "target_probability": None,
            "target_probabilities": {"class_0": None, "class_1": 0.25}, "score": None}
    assert main(["predict", str(model_dir), str(rows_csv)]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert strict(line) == want
    for name in ("p.jsonl", "p.json"):
        assert main(["predict", str(model_dir), str(rows_csv), "-o", str(tmp_path / name)]) == 0
        assert strict((tmp_path / name).read_text()) == want
    assert main(["predict", str(model_dir), str(rows_csv), "-o", str(tmp_path / "p.csv")]) == 0
    with (tmp_path / "p.csv").open(newline="") as f:
        (row,) = csv.DictReader(f)
    assert row["target_probability"] == "" and row["score"] == ""  # missing, not "nan"
    assert strict(row["target_probabilities"]) == want["target_probabilities"]


def test_evaluate_writes_an_undefined_metric_as_null(model_dir: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import layerwise.api

    monkeypatch.setattr(layerwise.api, "evaluate",
                        lambda *a, **k: {"accuracy": 0.5, "macro_f1": NAN, "count": 3})
    out = tmp_path / "m.json"
    assert main(["evaluate", str(model_dir), "--output", str(out)]) == 0
    assert strict(out.read_text()) == {"accuracy": 0.5, "macro_f1": None, "count": 3}


# -- 2. output paths -------------------------------------------------------------------------

# {M}: the model directory, {R}: a rows CSV, {C}: a config, {F}: an existing file, {D}: an
# existing folder
BAD_OUTPUTS = [
    (["train", "{C}", "--output", "{F}", "-q"], "output {F} exists and is a file"),
    (["train", "{C}", "--output", "{F}", "-q", "--resume"], "output {F} exists and is a file"),
    (["train", "{C}", "--output", "{F}/run", "-q"], "is under {F}, which is a file"),
    (["predict", "{M}", "{R}", "--output", "{D}"], "--output {D} is a folder"),
    (["predict", "{M}", "{R}", "--output", "{F}/p.csv"], "is under {F}, which is a file"),
    (["evaluate", "{M}", "--output", "{D}"], "--output {D} is a folder"),
    (["evaluate", "{M}", "--output", "{F}/m.json"], "is under {F}, which is a file"),
    (["embed", "{M}", "{R}", "--output", "{D}"], "--output {D} is a folder"),
    (["sample", "{M}", "--output-dir", "{F}"], "--output-dir {F} exists and is a file"),
    (["sample", "{M}", "--output", "{F}/grid.png"], "is under {F}, which is a file"),
    (["rollout", "{M}", "--video", "{F}/x.gif"], "is under {F}, which is a file"),
    (["schema", "--output", "{D}"], "--output {D} is a folder"),
]


@pytest.mark.parametrize(("args", "needle"), BAD_OUTPUTS,
                         ids=[" ".join(x for x in a if x != "{M}") for a, _ in BAD_OUTPUTS])
def test_a_bad_output_path_is_one_usage_error_and_loses_nothing(
        args: list[str], needle: str, model_dir: Path, rows_csv: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "work"
    (work / "folder").mkdir(parents=True)
    (work / "folder" / "keep.txt").write_text("mine")
    (work / "file").write_text("precious")
    (work / "cfg.yaml").write_text(yaml.safe_dump(TINY_MLP))
    names = {"{M}": str(model_dir), "{R}": str(rows_csv), "{C}": str(work / "cfg.yaml"),
             "{F}": str(work / "file"), "{D}": str(work / "folder")}

    def fill(s: str) -> str:
        for k, v in names.items():
            s = s.replace(k, v)
        return s

    before = sorted(work.rglob("*"))
    assert main([fill(a) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert fill(needle) in err and "unexpected" not in err and "Traceback" not in err
    assert sorted(work.rglob("*")) == before  # nothing written
    assert (work / "file").read_text() == "precious"
    assert (work / "folder" / "keep.txt").read_text() == "mine"


def test_open_run_refuses_a_file_before_writing(tmp_path: Path) -> None:
    from layerwise.config import parse
    from layerwise.runs import open_run

    (tmp_path / "taken").write_text("precious")
    cfg = parse(copy.deepcopy(TINY_MLP))
    for where in (tmp_path / "taken", tmp_path / "taken" / "run"):
        with pytest.raises(ConfigError, match=r"^output .*(exists and is|which is) a file"):
            open_run(cfg, where, resume=False)
    assert (tmp_path / "taken").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_predict_output_may_be_an_existing_file_or_in_a_new_folder(
        model_dir: Path, rows_csv: Path, tmp_path: Path) -> None:
    old = tmp_path / "p.csv"
    old.write_text("old predictions\n")
    assert main(["predict", str(model_dir), str(rows_csv), "--output", str(old)]) == 0
    with old.open(newline="") as f:
        assert len(list(csv.DictReader(f))) == 3  # replaced
    new = tmp_path / "new" / "sub" / "p.jsonl"
    assert main(["predict", str(model_dir), str(rows_csv), "--output", str(new)]) == 0
    assert len([strict(x) for x in new.read_text().splitlines()]) == 3
    out = tmp_path / "e" / "m.json"
    assert main(["evaluate", str(model_dir), "--output", str(out)]) == 0
    assert "accuracy" in strict(out.read_text())


def test_a_wrong_suffix_is_refused_before_predicting(model_dir: Path, rows_csv: Path,
                                                     tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    # the model is damaged: only a check made before loading answers about the suffix
    (model_dir / art.WEIGHTS).write_bytes(b"garbage")
    assert main(["predict", str(model_dir), str(rows_csv), "-o", str(tmp_path / "p.txt")]) == 2
    assert "--output must end in .csv, .jsonl or .json; got 'p.txt'" in capsys.readouterr().err


def test_train_into_a_file_in_a_real_subprocess(tmp_path: Path) -> None:
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(TINY_MLP))
    (tmp_path / "out").write_text("precious")
    res = subprocess.run([sys.executable, "-m", "layerwise", "train", str(tmp_path / "cfg.yaml"),
                          "--output", str(tmp_path / "out"), "-q"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert "exists and is a file" in res.stderr and "Traceback" not in res.stderr
    assert "FileExistsError" not in res.stderr
    assert (tmp_path / "out").read_text() == "precious"
