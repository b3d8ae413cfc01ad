"""Run folders: nothing written before the checks pass, a finished run is never overwritten
without --overwrite, and a failed run records its error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from layerwise.api import train
from layerwise.errors import CheckpointError, DataError


def test_a_run_that_fails_its_data_checks_leaves_nothing_behind(tiny_mlp: dict[str, Any],
                                                                tmp_path: Path) -> None:
    tiny_mlp["inputs"].append({"name": "no_such_column", "type": "numeric"})
    with pytest.raises(DataError):
        train(tiny_mlp, output=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_finished_run_is_not_overwritten_without_overwrite(tiny_mlp: dict[str, Any],
                                                             tmp_path: Path) -> None:
    first = train(tiny_mlp, output=tmp_path / "run")
    before = (first.model_dir / "model.safetensors").read_bytes()
    tiny_mlp["seed"] = 1
    with pytest.raises(CheckpointError, match="already holds a finished run.*--overwrite"):
        train(tiny_mlp, output=tmp_path / "run")
    assert (first.model_dir / "model.safetensors").read_bytes() == before
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["seed"] == 0
    again = train(tiny_mlp, output=tmp_path / "run", overwrite=True)
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["seed"] == 1
    assert (again.model_dir / "model.safetensors").read_bytes() != before


def test_the_cli_refuses_a_finished_run_with_one_line(tiny_mlp: dict[str, Any],
                                                      tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_mlp))
    cmd = [sys.executable, "-m", "layerwise", "train", str(cfg), "--output",
           str(tmp_path / "run"), "-q"]
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode != 0 and "--overwrite" in out.stderr
    assert "Traceback" not in out.stderr
    assert subprocess.run([*cmd, "--overwrite"], capture_output=True).returncode == 0


def test_a_failed_run_records_its_error(tiny_mlp: dict[str, Any], tmp_path: Path) -> None:
    from tests.model_helpers import Crash

    with pytest.raises(RuntimeError, match="simulated crash"):
        train(tiny_mlp, output=tmp_path / "run", callbacks=[Crash(2)])
    record = json.loads((tmp_path / "run" / "error.json").read_text())
    assert record["error"] == "RuntimeError" and "simulated crash" in record["message"]
    train(tiny_mlp, output=tmp_path / "run", resume=True)   # a good end clears it
    assert not (tmp_path / "run" / "error.json").exists()


def test_metrics_and_metadata_are_strict_json(tmp_path: Path) -> None:
    # NaN metrics (e.g. an undefined score) were written as bare NaN: not JSON
    from layerwise.runs import write_metrics

    write_metrics(tmp_path / "m.json", {"auc": float("nan"), "n": 3})
    text = (tmp_path / "m.json").read_text()
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == {"auc": None, "n": 3}
