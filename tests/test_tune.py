"""``layerwise tune``: search space checks, the pruning callback, a small study that prunes,
resumes, records every trial as a run and writes the best config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from layerwise.cli import main
from layerwise.errors import ConfigError
from layerwise.tracking import store
from tests.tracking_helpers import sqlite_uri

pytest.importorskip("optuna")
pytestmark = pytest.mark.usefixtures("one_thread")

SPACE = {"metric": "val_accuracy", "pruner": "median", "startup_trials": 2,
         "space": {"train.optimizer.lr": {"log_uniform": [1.0e-5, 0.3]},
                   "model.hidden.0": {"int": [2, 32], "log": True},
                   "train.batch_size": {"choice": [8, 32]}}}


def _config(tmp_path: Path, cfg: dict[str, Any], tune: dict[str, Any] | None = SPACE) -> Path:
    path = tmp_path / "cfg.yaml"
    cfg["train"]["epochs"] = 4
    path.write_text(yaml.safe_dump({**cfg, **({"tune": tune} if tune else {})}))
    return path


@pytest.mark.parametrize("space, msg", [
    ({"space": {"train.optimizer.lr": {"log_uniform": [0, 1]}}}, "low > 0"),
    ({"space": {"x": {"normal": [0, 1]}}}, "tune.space.x: expected one of"),
    ({"space": {"x": {"uniform": [1, 0]}}}, "low < high"),
    ({"space": {"x": {"choice": []}}}, "non-empty list"),
    ({"space": {"x": {"uniform": [0, 1]}}, "sampler": "grid"}, "unknown settings"),
    ({"metric": "val_accuracy"}, "no search space"),
])
def test_bad_search_spaces_are_refused(tmp_path: Path, tiny_mlp: dict[str, Any],
                                       space: dict[str, Any], msg: str) -> None:
    from layerwise.experiments.tune import read_settings

    path = _config(tmp_path, tiny_mlp, space)
    with pytest.raises(ConfigError, match=msg):
        read_settings(path, None)


def test_the_pruning_callback_stops_training_cleanly(tmp_path: Path) -> None:
    from layerwise.experiments.tune import Pruning

    class Trial:
        reported: list[tuple[float, int]] = []

        def report(self, value: float, step: int) -> None:
            self.reported.append((value, step))

        def should_prune(self) -> bool:
            return len(self.reported) >= 2

    class Trainer:
        should_stop = False

    cb, trainer = Pruning(Trial(), "val_accuracy", tmp_path), Trainer()
    cb.on_epoch_end(trainer, 0, {"val_accuracy": 0.5})
    assert not trainer.should_stop
    cb.on_epoch_end(trainer, 1, {"val_accuracy": 0.6})
    assert trainer.should_stop and cb.pruned_at == 2 and cb.values == [0.5, 0.6]
    with pytest.raises(ConfigError, match="'val_f1' is not logged"):
        Pruning(Trial(), "val_f1", tmp_path).on_epoch_end(trainer, 0, {"val_loss": 1.0})


def test_a_study_prunes_resumes_and_records_every_trial(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_mlp: dict[str, Any],
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LAYERWISE_TRACKING_URI", sqlite_uri(tmp_path))
    cfg = _config(tmp_path, tiny_mlp)
    out = tmp_path / "study"
    assert main(["tune", str(cfg), "--trials", "6", "--output", str(out)]) == 0
    assert "best config written to" in capsys.readouterr().out
    first = json.loads((out / "study.json").read_text())
    assert first["trials"] == 6 and first["study"] == "tiny_mlp-tune"
    assert main(["tune", str(cfg), "--trials", "9", "--output", str(out)]) == 0  # resumes
    summary = json.loads((out / "study.json").read_text())
    assert summary["trials"] == 9 and summary["history"][:6] == first["history"]
    assert summary["pruned"] >= 1 and summary["failed"] == 0, summary  # bad lr: behind early
    pruned = [h for h in summary["history"] if h["state"] == "pruned"]
    assert all(h["epochs"] < 4 for h in pruned)
    best = yaml.safe_load((out / "best.yaml").read_text())
    params = summary["best_params"]
    assert best["train"]["optimizer"]["lr"] == pytest.approx(params["train.optimizer.lr"])
    assert best["model"]["hidden"][0] == params["model.hidden.0"]
    values = [h["value"] for h in summary["history"] if h["state"] == "complete"]
    assert summary["best_value"] == max(values)
    runs = store.open_store().runs(kind="tune")
    assert sorted(r["tags"]["trial"] for r in runs) == list(range(9))
    assert {r["tags"]["study"] for r in runs} == {"tiny_mlp-tune"}
    assert sum(bool(r["tags"].get("pruned")) for r in runs) == summary["pruned"]
    # the dashboard's parameter importance reads the same study back: one share per
    # searched parameter, summing to 1
    from layerwise.tracking.studies import importances

    shares = importances(sqlite_uri(tmp_path), "tiny_mlp-tune")
    assert isinstance(shares, dict), shares
    assert set(shares) == set(params) and sum(shares.values()) == pytest.approx(1.0)


def test_sigterm_during_a_trial_stops_the_study_not_just_the_trial(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_mlp: dict[str, Any]) -> None:
    """SIGTERM reaches the Trainer of the running trial, which checkpoints and returns; the
    study must stop there (a killed `layerwise tune` used to go on with the next trial),
    and the same command resumes it to the full count."""
    from layerwise.experiments import tune as tune_module
    from layerwise.training import Callback

    class Sigterm(Callback):  # what the SIGTERM handler does, after the first epoch
        def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, Any]) -> None:
            trainer.interrupt_requested = True

    real = tune_module.api.train
    calls: list[int] = []

    def train(cfg: Any, **kw: Any) -> Any:
        calls.append(len(calls))
        if len(calls) == 2:
            kw["callbacks"] = [*kw["callbacks"], Sigterm()]
        return real(cfg, **kw)

    monkeypatch.setenv("LAYERWISE_TRACKING_URI", sqlite_uri(tmp_path))
    monkeypatch.setattr(tune_module.api, "train", train)
    cfg = _config(tmp_path, tiny_mlp)
    out = tmp_path / "study"
    result = tune_module.tune(cfg, trials=4, output=out)
    assert len(calls) == 2 and result.trials == 2 and result.failed == 1
    result = tune_module.tune(cfg, trials=4, output=out)  # the same command resumes
    summary = json.loads((out / "study.json").read_text())
    assert [h["state"] for h in summary["history"]].count("fail") == 1
    assert sum(h["state"] in ("complete", "pruned") for h in summary["history"]) == 4


def test_an_agent_config_is_refused_before_any_trial(tmp_path: Path) -> None:
    from layerwise.experiments.tune import tune

    cfg = Path(__file__).parent.parent / "examples" / "cartpole_ppo.yaml"
    space = tmp_path / "space.yaml"
    space.write_text("space: {train.optimizer.lr: {log_uniform: [0.0001, 0.01]}}\n")
    with pytest.raises(ConfigError, match="no epochs"):
        tune(cfg, trials=1, space=space, output=tmp_path / "study")
    assert not (tmp_path / "study").exists()


def test_a_recommender_config_tunes_on_its_ranking_metric(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A recommender reports its validation ranking metrics every epoch: the study prunes
    and ranks trials on them like any supervised run."""
    from layerwise.experiments.tune import tune
    from tests.test_recommend import _config as recommender
    from tests.test_recommend import _interactions

    monkeypatch.setenv("LAYERWISE_TRACKING_URI", sqlite_uri(tmp_path))
    cfg = recommender(_interactions(tmp_path / "tiny.csv"), "mf", epochs=3)
    cfg["tune"] = {"metric": "val_ndcg", "space": {"train.optimizer.lr": {
        "log_uniform": [1.0e-3, 0.1]}, "model.dim": {"choice": [4, 8]}}}
    path = tmp_path / "rec.yaml"
    path.write_text(yaml.safe_dump(cfg))
    result = tune(path, trials=3, output=tmp_path / "study")
    summary = json.loads((tmp_path / "study" / "study.json").read_text())
    assert summary["trials"] == 3 and summary["failed"] == 0, summary
    assert 0.0 < summary["best_value"] <= 1.0 and result.best_params
    best = yaml.safe_load((tmp_path / "study" / "best.yaml").read_text())
    assert best["model"]["dim"] == summary["best_params"]["model.dim"]
