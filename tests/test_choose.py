"""Choosing a small table's model by cross-validation (``layerwise init``): the folds use
the training and validation rows only, the lower held-out loss wins with ties to the
proposed model, a curved boundary picks the MLP, and init writes the choice with its
figures (``--no-cv`` skips it)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from layerwise.cli import main
from layerwise.config import parse
from layerwise.data.build import build
from layerwise.experiments import choose as ch

pytestmark = pytest.mark.usefixtures("one_thread")


def _table(path: Path, n: int, curved: bool) -> Path:
    """Two numbers and a label: inside/outside a circle (curved) or x > y (a line)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, size=(n, 2))
    inside = (x ** 2).sum(1) < 1.6 if curved else x[:, 0] > x[:, 1]
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "label"])
        w.writerows([[round(a, 4), round(b, 4), "in" if i else "out"]
                     for (a, b), i in zip(x, inside, strict=True)])
    return path


def _config(tmp_path: Path, n: int = 200, curved: bool = True) -> Path:
    data = _table(tmp_path / "t.csv", n, curved)
    cfg = {"name": "t", "seed": 0, "data": {"path": str(data)},
           "inputs": [{"name": "a", "type": "numeric"}, {"name": "b", "type": "numeric"}],
           "outputs": [{"name": "label", "type": "binary"}],
           "model": {"family": "mlp", "hidden": [32, 16], "dropout": 0.0},
           "train": {"epochs": 60, "batch_size": 32, "progress": "quiet",
                     "optimizer": {"name": "adamw", "lr": 0.01},
                     "early_stopping": {"monitor": "val_loss", "patience": 10}}}
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def test_the_folds_deal_the_training_and_validation_rows_and_never_the_test_split(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _config(tmp_path)
    ds = build(parse(path))
    test_rows = {tuple(r) for r in ds.test.inputs["numeric"].tolist()}
    seen: list[tuple[float, ...]] = []

    def spy(cfg: Any, ds: Any, fit: Any, stop: Any, test: Any, metric: str
            ) -> tuple[float, float]:
        for part in (fit, stop, test):
            rows = {tuple(r) for r in part.inputs["numeric"].tolist()}
            assert not rows & test_rows, "a test-split row reached the folds"
        seen.extend(tuple(r) for r in test.inputs["numeric"].tolist())
        return 0.5, 0.5

    monkeypatch.setattr(ch, "_score", spy)
    c = ch.choose(path, {"mlp": None})
    assert c.rows == len(ds.train) + len(ds.validation)
    assert len(seen) == c.rows and len(set(seen)) == c.rows  # each row held out once


def test_the_lower_held_out_loss_wins_and_a_tie_goes_to_the_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _config(tmp_path)
    loss = {"mlp": 0.3, "linear": 0.2}
    monkeypatch.setattr(ch, "_score", lambda cfg, *a: (
        loss["linear" if cfg.model.hidden == [] else "mlp"], 0.9))
    assert ch.choose(path, {"mlp": None, "linear": ch.linear}).best == "linear"
    loss["linear"] = 0.3 + 1e-9  # equal to 6 decimals: the proposed model stays
    assert ch.choose(path, {"mlp": None, "linear": ch.linear}).best == "mlp"


def test_a_curved_boundary_picks_the_mlp_over_a_linear_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    c = ch.choose(_config(tmp_path), {"mlp": None, "linear": ch.linear}, folds=3)
    assert c.best == "mlp", c.describe()
    assert c.mean("mlp") > c.mean("linear") + 0.15  # a circle is not linearly separable
    assert "3-fold CV accuracy" in c.describe()


def test_init_on_a_small_table_writes_the_choice_with_its_figures(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _table(tmp_path / "line.csv", 120, curved=False)
    out = tmp_path / "line.yaml"
    assert main(["init", str(data), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "5-fold CV accuracy on" in printed
    text = out.read_text(encoding="utf-8")
    hidden = yaml.safe_load(text)["model"]["hidden"]
    comment = next(line for line in text.splitlines() if line.strip().startswith("hidden:"))
    assert ("linear:" if hidden == [] else "MLP:") in comment and "held-out loss" in comment
    parse(out)  # the rewritten config is valid
    assert main(["init", str(data), "--output", str(out), "--overwrite", "--no-cv"]) == 0
    assert "cross-validation" not in capsys.readouterr().out
    assert yaml.safe_load(out.read_text(encoding="utf-8"))["model"]["hidden"] == [64, 32]


def test_a_run_without_a_validation_split_deals_its_training_rows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _config(tmp_path)
    cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    cfg["data"]["split"] = {"validation": 0.0}
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    monkeypatch.setattr(ch, "_score", lambda *a: (0.5, 0.5))
    c = ch.choose(path, {"mlp": None})
    assert c.rows == len(build(parse(path)).train)
