"""File paths in a config: relative to the config file, then the current folder; ``$VAR``
and ``~`` expanded; stored absolute in a run; "not found" names every place looked."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from sklearn.datasets import load_iris

import layerwise as lw
from layerwise.cli import main
from layerwise.config import parse
from layerwise.errors import ConfigError, DataError


def write_iris(path: Path) -> Path:
    """A tiny CSV: four numeric columns and a category label, 60 rows."""
    iris = load_iris(as_frame=True)
    frame = iris.frame.iloc[::5].rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    frame["target"] = [iris.target_names[t] for t in frame["target"]]
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def iris_config(data_path: str, **data: Any) -> dict[str, Any]:
    return {"name": "iris", "seed": 0, "data": {"path": data_path, **data},
            "inputs": [{"name": n, "type": "numeric"} for n in
                       ("sepal_length", "sepal_width", "petal_length", "petal_width")],
            "outputs": [{"name": "target", "type": "category"}],
            "model": {"family": "mlp", "hidden": [8]},
            "train": {"epochs": 1, "batch_size": 16, "progress": "quiet"}}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """``project/my.yaml`` with ``data.path: my.csv`` beside it."""
    root = tmp_path / "project"
    write_iris(root / "my.csv")
    (root / "my.yaml").write_text(yaml.safe_dump(iris_config("my.csv")))
    return root


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The current folder: an empty one that is not the config's."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def test_train_from_another_folder_reads_the_file_beside_the_config(
        project: Path, elsewhere: Path) -> None:
    run = lw.train(project / "my.yaml", output=elsewhere / "run")
    assert run.config.data.path == str(project / "my.csv")
    stored = yaml.safe_load((elsewhere / "run" / "config.yaml").read_text())
    assert stored["data"]["path"] == str(project / "my.csv")  # absolute, not "my.csv"
    meta = json.loads((run.model_dir / "layerwise.json").read_text())
    assert meta["config"]["data"]["path"] == str(project / "my.csv")


def test_the_config_folder_comes_before_the_current_one(
        project: Path, elsewhere: Path) -> None:
    write_iris(elsewhere / "my.csv")
    assert parse(project / "my.yaml").data.path == str(project / "my.csv")  # type: ignore[union-attr]
    (project / "my.csv").unlink()  # then the current folder
    assert parse(project / "my.yaml").data.path == str(elsewhere / "my.csv")  # type: ignore[union-attr]


def test_dicts_and_objects_resolve_against_the_current_folder(
        project: Path, elsewhere: Path) -> None:
    write_iris(elsewhere / "here.csv")
    cfg = parse(iris_config("here.csv"))
    assert cfg.data.path == str(elsewhere / "here.csv")  # type: ignore[union-attr]
    obj = lw.Config.model_validate(iris_config("here.csv"))
    assert parse(obj) is obj and obj.data.path == str(elsewhere / "here.csv")
    assert parse(iris_config(str(project / "my.csv"))).data.path == str(project / "my.csv")  # type: ignore[union-attr]


def test_variables_and_home_are_expanded(project: Path, elsewhere: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATA", str(project))
    for written in ("$DATA/my.csv", "${DATA}/my.csv"):
        assert parse(iris_config(written)).data.path == str(project / "my.csv")  # type: ignore[union-attr]
    monkeypatch.setenv("HOME", str(project))
    assert parse(iris_config("~/my.csv")).data.path == str(project / "my.csv")  # type: ignore[union-attr]
    # a --set value goes through the same expansion
    cfg = parse(project / "my.yaml", ["data.path=$DATA/my.csv", "data.test_path=~/my.csv"])
    assert cfg.data.path == cfg.data.test_path == str(project / "my.csv")  # type: ignore[union-attr]


def test_cli_set_expands_a_variable(project: Path, elsewhere: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATA", str(project))
    (elsewhere / "c.yaml").write_text(yaml.safe_dump(iris_config("nowhere.csv")))
    assert main(["train", "c.yaml", "--output", "run", "-q",
                 "--set", "data.path=$DATA/my.csv"]) == 0
    stored = yaml.safe_load((elsewhere / "run" / "config.yaml").read_text())
    assert stored["data"]["path"] == str(project / "my.csv")


def test_an_unset_variable_names_the_field_and_the_variable(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LW_NO_SUCH_VAR", raising=False)
    with pytest.raises(ConfigError) as e:
        parse(iris_config("${LW_NO_SUCH_VAR}/my.csv"))
    assert "data.path" in str(e.value) and "$LW_NO_SUCH_VAR is not set" in str(e.value)
    with pytest.raises(ConfigError, match="data.validation_path.*LW_NO_SUCH_VAR"):
        parse(project / "my.yaml", ["data.validation_path=$LW_NO_SUCH_VAR/v.csv"])


def test_evaluate_a_finished_run_from_another_folder(
        project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)  # trained where `layerwise train my.yaml` always worked
    run = lw.train("my.yaml", output=tmp_path / "run")
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)
    metrics = lw.evaluate(run.model_dir)
    assert metrics["accuracy"] == pytest.approx(run.metrics["test"]["accuracy"])
    assert main(["evaluate", str(run.model_dir), "--output", "m.json"]) == 0
    assert (other / "m.json").is_file()


def test_not_found_names_every_place_looked(project: Path, elsewhere: Path) -> None:
    (project / "my.csv").unlink()
    with pytest.raises(DataError) as e:
        lw.train(project / "my.yaml", output=elsewhere / "run")
    msg = str(e.value)
    assert msg == (f"data file not found: my.csv (looked in {project / 'my.csv'}, "
                   f"{elsewhere / 'my.csv'})")
    write_iris(elsewhere / "my.csv")  # a dict: only the current folder, for each path
    with pytest.raises(DataError, match=re.escape(f"nope.csv (looked in {elsewhere}")):
        lw.train(iris_config("my.csv", test_path="nope.csv"))


def test_not_found_for_an_absolute_path_names_it(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        lw.train(iris_config(str(tmp_path / "gone.csv")), output=tmp_path / "run")
    assert str(e.value) == f"data file not found: {tmp_path / 'gone.csv'}"
