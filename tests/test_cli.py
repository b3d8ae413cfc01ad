"""The command line: every command works, errors are one line without a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from layerwise.cli import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import TINY_MLP

    d = tmp_path_factory.mktemp("cli")
    (d / "cfg.yaml").write_text(yaml.safe_dump(TINY_MLP))
    assert main(["train", str(d / "cfg.yaml"), "--output", str(d / "run"), "-q",
                 "--set", "train.epochs=2"]) == 0
    return d


def test_train_writes_every_run_output(trained: Path) -> None:
    run = trained / "run"
    for name in ("model/layerwise.json", "model/model.safetensors", "model/reference.json",
                 "model/card.md", "metrics.json", "history.csv", "config.yaml", "curves.png"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"train", "validation", "test", "training", "choices"} <= set(metrics)
    t = metrics["test"]
    assert {"accuracy", "macro_f1", "per_class", "confusion_matrix"} <= set(t)
    assert metrics["training"]["epochs"] == 2  # the --set override applied
    assert {"precision", "memory_format", "batching"} <= set(metrics["choices"])
    header = (run / "history.csv").read_text().splitlines()[0]
    assert "train_loss" in header and "val_accuracy" in header and "grad_norm/" in header


def test_evaluate_on_the_runs_own_test_split(trained: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = trained / "eval.json"
    assert main(["evaluate", str(trained / "run" / "model"), "--output", str(out)]) == 0
    metrics = json.loads(out.read_text())
    saved = json.loads((trained / "run" / "metrics.json").read_text())["test"]
    assert metrics["accuracy"] == pytest.approx(saved["accuracy"])
    assert "accuracy" in capsys.readouterr().out


def test_predict_a_csv_to_csv_and_jsonl(trained: Path) -> None:
    import pandas as pd
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame.head(5)
    src = trained / "rows.csv"
    frame.to_csv(src, index=False)
    assert main(["predict", str(trained / "run" / "model"), str(src), "--output",
                 str(trained / "p.csv")]) == 0
    preds = pd.read_csv(trained / "p.csv")
    assert len(preds) == 5 and {"target", "target_probability"} <= set(preds.columns)
    assert main(["predict", str(trained / "run" / "model"), str(src), "--output",
                 str(trained / "p.jsonl")]) == 0
    lines = (trained / "p.jsonl").read_text().splitlines()
    assert len(lines) == 5 and "target_probabilities" in json.loads(lines[0])


@pytest.mark.parametrize("args, needle", [
    (["train", "missing.yaml"], "config file not found"),
    (["evaluate", "no/such/dir"], "model directory not found"),
    (["predict", "no/such/dir", "x.csv"], "model directory not found"),
])
def test_errors_are_one_line_without_traceback(args: list[str], needle: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert err.startswith("error: ")


def test_unknown_config_key_from_the_command_line(tmp_path: Path, tiny_mlp: dict[str, Any],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    tiny_mlp["train"]["epoch"] = 3
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(tiny_mlp))
    assert main(["train", str(cfg), "--output", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'train.epoch'" in err and "did you mean 'epochs'" in err
    assert "Traceback" not in err


def test_a_real_subprocess_exits_non_zero_without_traceback(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "layerwise", "train", str(tmp_path / "x.yaml")],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and "config file not found" in out.stderr


def test_usage_errors_exit_non_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train"]) != 0
    assert main(["no-such-command"]) != 0


def test_schema_and_datasets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "--output", str(tmp_path / "s.json")]) == 0
    assert "properties" in json.loads((tmp_path / "s.json").read_text())
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    for name in ("digits", "mnist-5k", "fashion-mnist", "breast-cancer", "wine"):
        assert name in out


def test_help_does_not_import_torch() -> None:
    code = ("import sys, layerwise.cli; from layerwise.cli import main; "
            "main(['--help']); print('torch' in sys.modules, 'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False False"
