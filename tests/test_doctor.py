"""The training doctor names what went wrong first in five deliberately broken runs, and
nothing in a healthy one; the dead-unit telemetry it reads does not change training."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import layerwise as lw
from layerwise.cli import main
from layerwise.errors import ArtifactError
from layerwise.explain.doctor import diagnose

pytestmark = pytest.mark.usefixtures("one_thread")

FEATURES = 8


def write_rows(path: Path, n: int, *, noise: float = 0.0, copies: int = 1,
               seed: int = 0) -> Path:
    """Three classes, the argmax of a fixed linear map of 8 features; ``noise`` of the
    labels redrawn at random; each row written ``copies`` times."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, FEATURES))
    w = np.random.default_rng(99).normal(size=(FEATURES, 3))
    y = (x @ w).argmax(1)
    flip = rng.random(n) < noise
    y[flip] = rng.integers(0, 3, flip.sum())
    lines = [",".join([*(f"f{i}" for i in range(FEATURES)), "label"])]
    lines += [",".join([*(f"{v:.5f}" for v in row), f"c{c}"]) for row, c in zip(x, y)]
    body = lines[1:] * copies
    path.write_text("\n".join([lines[0], *body]) + "\n")
    return path


def config(path: Path, **train: Any) -> dict[str, Any]:
    return {
        "name": "doctor", "seed": 0,
        "data": {"path": str(path)},
        "inputs": [{"name": f"f{i}", "type": "numeric"} for i in range(FEATURES)],
        "outputs": [{"name": "label", "type": "category"}],
        "model": {"family": "mlp", "hidden": [32]},
        "train": {"epochs": 20, "batch_size": 32, "progress": "quiet",
                  "checkpoint_every": 0, "telemetry_every": 5,
                  "optimizer": {"lr": 0.01}, **train},
    }


def broken(name: str, tmp: Path) -> dict[str, Any]:
    clean = write_rows(tmp / "clean.csv", 500)
    cfg = config(clean)
    if name == "lr_10":
        cfg["train"]["optimizer"] = {"lr": 10.0}
    elif name == "sigmoid_20":
        cfg["model"].update(hidden=[32] * 20, activation="sigmoid")
    elif name == "one_unit":
        cfg["model"]["hidden"] = [1]
    elif name == "small_long":  # 200 rows, 200 epochs, no regularisation
        cfg = config(write_rows(tmp / "small.csv", 250, noise=0.3, seed=1), epochs=200)
        cfg["model"]["hidden"] = [128, 128]
        cfg["data"]["split"] = {"validation": 0.1, "test": 0.1}
    elif name == "same_rows":  # every row twice: random splits share them
        cfg = config(write_rows(tmp / "twice.csv", 250, copies=2))
    return cfg


EXPECTED = {"lr_10": "lr_too_high", "sigmoid_20": "vanishing_gradients",
            "one_unit": "underfitting_capacity", "small_long": "overfitting",
            "same_rows": "duplicate_rows"}


def run(cfg: dict[str, Any], out: Path) -> Path:
    lw.train(copy.deepcopy(cfg), output=out)
    return out


@pytest.mark.slow  # five training runs: about 40 s on a loaded 2-core machine
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_broken_run_gets_its_finding_first(name: str, tmp_path: Path) -> None:
    found = diagnose(run(broken(name, tmp_path), tmp_path / "run"))
    assert found, f"{name}: no finding"
    assert found[0].name == EXPECTED[name], [f.name for f in found]
    assert found[0].evidence and found[0].change


def test_a_healthy_run_gets_no_finding(tmp_path: Path) -> None:
    found = diagnose(run(broken("healthy", tmp_path), tmp_path / "run"))
    assert found == [], [(f.name, f.evidence) for f in found]


def test_the_suggested_set_lines_parse(tmp_path: Path) -> None:
    """A suggested change is a valid ``--set`` on the run's own config."""
    found = diagnose(run(broken("one_unit", tmp_path), tmp_path / "run"))
    cfg = lw.parse_config(tmp_path / "run" / "config.yaml", found[0].set)
    assert cfg.model.hidden == [64]
    from layerwise.explain import doctor

    view = doctor.read_run(tmp_path / "run", data=False)
    view.history = [{"val_loss": v, "train_loss": 0.1} for v in (1, 0.5, 0.6, 0.9, 1.0)]
    over = doctor.overfitting(view)
    assert over is not None and "rose from its best 0.5" in over.evidence
    cfg = lw.parse_config(tmp_path / "run" / "config.yaml", over.set)
    assert cfg.train.early_stopping.patience == 5 and cfg.model.dropout == 0.3


def test_cli_prints_findings_and_writes_json(tmp_path: Path, capsys: Any) -> None:
    out = run(broken("one_unit", tmp_path), tmp_path / "run")
    assert main(["doctor", str(out), "--output", str(tmp_path / "d.json")]) == 0
    text = capsys.readouterr().out
    assert "underfitting" in text and "--set model.hidden=" in text
    doc = json.loads((tmp_path / "d.json").read_text())
    assert doc["findings"][0]["name"] == "underfitting_capacity"


def test_not_a_run_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no config.yaml"):
        diagnose(tmp_path)


def test_dead_unit_telemetry_leaves_training_unchanged(tmp_path: Path) -> None:
    """The same weights with dead-unit hooks on every step and with none (a model whose
    ReLUs are not nn.ReLU modules is never hooked)."""
    from layerwise import TrainConfig, Trainer

    def fit(every: int) -> tuple[torch.Tensor, list[dict[str, Any]]]:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(),
                                    torch.nn.Linear(8, 2))
        x, y = torch.randn(64, 4, generator=torch.Generator().manual_seed(1)), \
            torch.randint(0, 2, (64,), generator=torch.Generator().manual_seed(2))
        cfg = TrainConfig(epochs=2, batch_size=16, progress="quiet", telemetry_every=every)
        r = Trainer(cfg, loss_fn=torch.nn.functional.cross_entropy).fit(model, (x, y))
        return torch.cat([p.detach().flatten() for p in model.parameters()]), r.history

    w1, h1 = fit(1)
    w2, h2 = fit(1000)
    assert torch.equal(w1, w2)
    assert "dead_relu/1" in h1[0] and 0.0 <= h1[0]["dead_relu/1"] <= 1.0
