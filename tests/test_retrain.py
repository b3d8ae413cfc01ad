"""``layerwise monitor MODEL LIVE --retrain CONFIG``: a tiny tabular model fine-tuned on
newly labelled rows (a data file, a review queue), promoted only when it beats the current
model on the same held-out rows, and moved along its registry alias."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

import layerwise as lw
from layerwise.errors import ConfigError, DataError
from layerwise.inference.predictor import Predictor
from layerwise.monitoring import labels
from layerwise.monitoring.retrain import retrain
from tests.test_monitoring import table, write_csv

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def weak(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A model trained one short epoch (so it can improve), its config and new rows."""
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("retrain")
    cfg = {"name": "retrain_mlp", "seed": 0,
           "data": {"path": str(write_csv(root / "train.csv", table(400, 0)))},
           "inputs": [{"name": n, "type": "numeric"} for n in "abc"]
           + [{"name": "color", "type": "category"}],
           "outputs": [{"name": "y", "type": "category"}],
           "model": {"family": "mlp", "hidden": [8]},
           "train": {"epochs": 1, "batch_size": 64, "progress": "quiet",
                     "optimizer": {"lr": 1e-3}}}
    model = lw.train(cfg, output=root / "run").model_dir
    new = write_csv(root / "new.csv", table(300, 7))
    return {"root": root, "model": model, "config": cfg, "new": new}


def tuning(cfg: dict[str, Any], lr: float, epochs: int = 8) -> dict[str, Any]:
    return {**cfg, "train": {**cfg["train"], "epochs": epochs, "optimizer": {"lr": lr}}}


def test_a_better_candidate_is_promoted_with_both_figures(weak: dict[str, Any],
                                                          tmp_path: Path) -> None:
    r = retrain(weak["model"], tuning(weak["config"], 0.03), data=weak["new"],
                output=tmp_path / "v2")
    assert r["promoted"] and r["metric"] == "accuracy"
    assert r["candidate"] > r["current"]
    assert r["held_out_new_rows"] == 90 and r["tuned_new_rows"] == 210
    assert r["held_out_rows"] == 90 + r["held_out_test_rows"]
    # the same held-out rows scored by the loaded artifacts give the same figures
    saved = json.loads((tmp_path / "v2" / "retrain.json").read_text())
    assert saved["candidate"] == r["candidate"]
    new = Predictor.load(tmp_path / "v2" / "model")
    old = Predictor.load(weak["model"])
    assert new.meta["lineage"]["retrained_from"] == str(weak["model"])
    rows = table(300, 11)
    acc = [np.mean([p["y"] == t["y"] for p, t in zip(m.predict(rows), rows, strict=True)])
           for m in (new, old)]
    assert acc[0] > acc[1]  # better on rows neither saw


def test_a_candidate_that_is_not_better_is_not_promoted(weak: dict[str, Any],
                                                        tmp_path: Path) -> None:
    r = retrain(weak["model"], tuning(weak["config"], 1e-12, 1), data=weak["new"],
                output=tmp_path / "same")
    assert not r["promoted"] and r["candidate"] == pytest.approx(r["current"])
    assert not (tmp_path / "same" / "model").exists()
    assert json.loads((tmp_path / "same" / "retrain.json").read_text())["promoted"] is False


def test_review_queue_labels_feed_retraining(weak: dict[str, Any], tmp_path: Path) -> None:
    from layerwise.serving.records import review_record

    queue = tmp_path / "review.jsonl"
    rows = table(120, 3)
    items = [review_record("m", "v1", {k: v for k, v in r.items() if k != "y"}, {"y": "no"},
                           "low confidence", request_id=f"req{i}") for i, r in enumerate(rows)]
    for it, r in zip(items[:100], rows[:100], strict=True):
        it["label"] = r["y"]  # a person labelled 100 of 120
    queue.write_text("".join(json.dumps(it) + "\n" for it in items))
    assert labels.is_review_queue(queue) and not labels.is_review_queue(weak["new"])
    pred = Predictor.load(weak["model"])
    got = labels.labelled_rows(labels.read_lines(queue), pred.schema, str(queue))
    assert len(got) == 100 and got[0]["y"] == rows[0]["y"]
    r = retrain(weak["model"], tuning(weak["config"], 0.03), review=queue,
                output=tmp_path / "from-queue")
    assert r["tuned_new_rows"] + r["held_out_new_rows"] == 100


def test_a_registry_alias_moves_to_the_promoted_version(weak: dict[str, Any], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    from layerwise.tracking.registry import lookup, register, set_alias
    from layerwise.tracking.store import open_store

    monkeypatch.setenv("LAYERWISE_TRACKING_URI", f"sqlite:///{tmp_path / 'lw.db'}")
    store = open_store()
    set_alias(store, "wine", "production", register(store, str(weak["model"]), "wine"))
    r = retrain("models:/wine@production", tuning(weak["config"], 0.03), data=weak["new"],
                output=tmp_path / "v2")
    assert r["promoted"] and r["registered"] == "models:/wine/2"
    assert Path(lookup(store, "models:/wine@production")["path"]) == (
        tmp_path / "v2" / "model").absolute()


def test_monitor_retrain_command(weak: dict[str, Any], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    from layerwise.cli import main

    cfg = tmp_path / "tune.yaml"
    cfg.write_text(yaml.safe_dump(tuning(weak["config"], 1e-12, 1)))
    code = main(["monitor", str(weak["model"]), str(weak["new"]), "--retrain", str(cfg),
                 "--output", str(tmp_path / "out")])
    said = capsys.readouterr().out
    assert code in (0, None) and "kept the current model: accuracy on 170 held-out rows" in said
    assert "candidate" in said and "current" in said


def test_retrain_refuses_what_it_cannot_use(weak: dict[str, Any], tmp_path: Path) -> None:
    other = {**weak["config"], "outputs": [{"name": "a", "type": "numeric"}],
             "inputs": [{"name": n, "type": "numeric"} for n in "bc"]}
    with pytest.raises(ConfigError, match="differ from the model's"):
        retrain(weak["model"], other, data=weak["new"], output=tmp_path / "x")
    unlabelled = write_csv(tmp_path / "u.csv", [{k: v for k, v in r.items() if k != "y"}
                                                 for r in table(20, 1)])
    with pytest.raises(DataError, match="no column 'y'"):
        retrain(weak["model"], weak["config"], data=unlabelled, output=tmp_path / "y")
    with pytest.raises(DataError, match="summary only"):
        labels.decode_png({"shape": [8, 8], "mean": 0.5}, "review.jsonl, item 1, image")
