"""``layerwise runs …`` and ``layerwise registry …``, and ``models:/`` URIs where a model
directory is accepted (predict, evaluate)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from layerwise.cli import main
from layerwise.tracking import registry, store, views
from tests.tracking_helpers import sqlite_uri

pytest.importorskip("sqlalchemy")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    u = sqlite_uri(tmp_path)
    monkeypatch.setenv("LAYERWISE_TRACKING_URI", u)
    return u


def _fake_runs(uri: str) -> list[str]:
    s = store.open_store(uri)
    ids = []
    for i, (lr, acc) in enumerate([(0.1, 0.80), (0.01, 0.92), (0.001, 0.85)]):
        rid = s.create_run(name=f"r{i}", config={"train": {"lr": lr, "epochs": 3}, "seed": 0},
                           status="finished" if i < 2 else "failed")
        s.update_run(rid, metrics={"test": {"accuracy": acc, "loss": 1 - acc}},
                     duration_s=10.0 + i)
        s.log_metrics(rid, [("train_loss", e, 1 / e) for e in (1, 2, 3)])
        ids.append(rid)
        time.sleep(0.01)
    return ids


def test_views_flatten_diff_deltas_where() -> None:
    a = {"config": {"train": {"lr": 0.1, "epochs": 3}}, "metrics": {"test": {"acc": 0.5}}}
    b = {"config": {"train": {"lr": 0.2, "epochs": 3}}, "metrics": {"test": {"acc": 0.75}}}
    assert views.flatten({"a": {"b": 1}, "c": [1]}) == {"a.b": 1, "c": [1]}
    assert views.config_diff([a, b]) == {"train.lr": [0.1, 0.2]}
    assert views.metric_deltas([a, b]) == {"test.acc": ([0.5, 0.75], [0.0, 0.25])}
    a["metrics"]["test"]["per_class"] = {"x": {"f1": 0.1}}  # its own table, not a headline
    assert views.final_scalars(a) == {"test.acc": 0.5}
    key, op, value = views.parse_where("test.acc>=0.6")
    assert key == "test.acc" and value == 0.6
    assert not views.matches(a, [(key, op, value)]) and views.matches(b, [(key, op, value)])
    assert views.matches(a, [views.parse_where("config.train.epochs=3")])
    with pytest.raises(Exception, match="KEY OP VALUE"):
        views.parse_where("nonsense")


def test_runs_list_filters_and_sorts(uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    _fake_runs(uri)
    assert main(["runs", "list", "--sort", "test.accuracy"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in out[2:]] == ["r1", "r2", "r0"]
    assert "test.accuracy" in out[0]
    assert main(["runs", "list", "--status", "finished", "--sort", "test.accuracy",
                 "--ascending"]) == 0
    assert [line.split()[1] for line in capsys.readouterr().out.splitlines()[2:]] == \
        ["r0", "r1"]
    assert main(["runs", "list", "--where", "config.train.lr<0.05", "--sort", "name"]) == 0
    assert [line.split()[1] for line in capsys.readouterr().out.splitlines()[2:]] == \
        ["r2", "r1"]
    assert main(["runs", "list", "--where", "bad"]) == 2


def test_runs_show_compare_delete(uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    ids = _fake_runs(uri)
    assert main(["runs", "show", "r1"]) == 0
    out = capsys.readouterr().out
    assert ids[1] in out and "test.accuracy: 0.92" in out and "train_loss" in out
    assert main(["runs", "show", ids[0][:6], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == ids[0]
    assert main(["runs", "compare", "r0", "r1"]) == 0
    out = capsys.readouterr().out
    lr_line = next(line for line in out.splitlines() if line.startswith("train.lr"))
    assert "0.1" in lr_line and "0.01" in lr_line
    assert "epochs" not in out.split("final metrics")[0]  # the same in both: not a difference
    acc = next(line for line in out.splitlines() if line.startswith("test.accuracy"))
    assert "+0.12" in acc
    assert main(["runs", "compare", "r0"]) == 2
    assert main(["runs", "show", "nope"]) == 2
    assert "no run 'nope'" in capsys.readouterr().err
    assert main(["runs", "delete", "r2", "--yes"]) == 0
    assert [r["name"] for r in store.open_store(uri).runs()] == ["r1", "r0"]


CARD = {"intended_use": "Telling the three cultivars apart in the teaching lab.",
        "limitations": "Wines from one region only.", "owners": ["lab team"]}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """One real run recorded in its own store: (store URI, run directory)."""
    import os

    import layerwise as lw
    from tests.conftest import TINY_MLP

    root = tmp_path_factory.mktemp("registry")
    u = sqlite_uri(root)
    before = os.environ.get("LAYERWISE_TRACKING_URI")
    os.environ["LAYERWISE_TRACKING_URI"] = u
    try:
        run = lw.train({**TINY_MLP, "name": "wine", "card": CARD}, output=root / "wine")
    finally:
        if before is None:
            os.environ.pop("LAYERWISE_TRACKING_URI")
        else:
            os.environ["LAYERWISE_TRACKING_URI"] = before
    return u, run.dir


def test_registry_versions_aliases_and_models_uris(trained: tuple[str, Path], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    u, run_dir = trained
    monkeypatch.setenv("LAYERWISE_TRACKING_URI", u)
    assert main(["registry", "register", "wine", "--name", "wine", "--alias", "staging"]) == 0
    assert "models:/wine/1" in capsys.readouterr().out
    assert main(["registry", "register", "wine", "--name", "wine"]) == 0
    assert main(["registry", "alias", "wine", "2", "production"]) == 0
    s = store.open_store(u)
    assert [(v["version"], v["aliases"]) for v in registry.versions(s, "wine")] == \
        [(1, ["staging"]), (2, ["production"])]
    model = run_dir / "model"
    for ref in ("models:/wine@production", "models:/wine/1", "models:/wine"):
        assert registry.resolve_model(ref) == model
    assert registry.resolve_model(tmp_path) == tmp_path  # a plain path stays as it is
    for bad, msg in [("models:/wine@nope", "no alias 'nope'"), ("models:/wine/9", "no version 9"),
                     ("models:/other", "no model named 'other'"), ("models:/wine/x", "VERSION")]:
        with pytest.raises(Exception, match=msg):
            registry.resolve_model(bad)
    capsys.readouterr()
    rows = tmp_path / "rows.csv"
    rows.write_text("alcohol,malic_acid,ash,flavanoids,color_intensity,proline\n"
                    "13.2,1.8,2.4,2.9,5.6,1100\n")
    assert main(["predict", "models:/wine@production", str(rows)]) == 0
    assert "target" in json.loads(capsys.readouterr().out.splitlines()[0])
    assert main(["evaluate", "models:/wine/1"]) == 0
    assert "accuracy" in capsys.readouterr().out
    (ev,) = s.runs(kind="evaluate")  # the evaluation is recorded too
    assert ev["tags"]["model"] == "models:/wine/1" and ev["path"] == str(model)
    assert ev["metrics"]["test"]["accuracy"] > 0
    # serve and monitor take the same names (the server calls the model by its name)
    from layerwise.serving.server import sources
    from layerwise.serving.settings import ServeSettings

    assert sources(["models:/wine@production"], ServeSettings()) == {"wine": str(model)}
    assert main(["monitor", "models:/wine@production", str(rows), "-o",
                 str(tmp_path / "drift")]) in (0, 1)  # 1: drift on one row, not an error


def test_a_changed_registered_model_is_refused(trained: tuple[str, Path], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    u, run_dir = trained
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("checkpoints"))
    monkeypatch.setenv("LAYERWISE_TRACKING_URI", u)
    s = store.open_store(u)
    rid = s.create_run(name="copied", path=str(copy), status="finished")
    version = registry.register(s, rid, "copied")
    meta = copy / "model" / "layerwise.json"
    meta.write_text(meta.read_text().replace('"wine"', '"wine2"', 1))
    assert main(["predict", f"models:/copied/{version}", str(tmp_path)]) == 2
    assert "changed since version" in capsys.readouterr().err
    with pytest.raises(Exception, match="model name"):
        registry.register(s, rid, "bad name!")
    with pytest.raises(Exception, match="no model in"):
        registry.register(s, s.create_run(name="empty", path=str(tmp_path / "e")), "x")
    # a folder by path: a model folder the store never saw (e.g. trained with tracking off)
    elsewhere = tmp_path / "untracked"
    shutil.copytree(run_dir / "model", elsewhere)
    v = registry.register(s, str(elsewhere), "untracked")
    assert registry.versions(s, "untracked")[0]["run_id"] is None
    assert registry.resolve_model(f"models:/untracked/{v}") == elsewhere
    linked = registry.register(s, str(copy), "linked")  # a run folder the store knows
    assert registry.versions(s, "linked")[linked - 1]["run_id"] == rid
    with pytest.raises(Exception, match="no model here"):
        registry.register(s, str(tmp_path), "nothing")


def test_the_registry_list_and_resolve_commands(trained: tuple[str, Path],
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    u, run_dir = trained
    monkeypatch.setenv("LAYERWISE_TRACKING_URI", u)
    registry.register(store.open_store(u), "wine", "listed")
    capsys.readouterr()
    assert main(["registry", "list", "listed"]) == 0
    assert str(run_dir / "model") in capsys.readouterr().out
    assert main(["registry", "resolve", "models:/listed"]) == 0
    assert capsys.readouterr().out.strip() == str(run_dir / "model")
    assert main(["registry", "unalias", "listed", "none"]) == 0


def test_the_model_card_is_rebuilt_from_the_store(trained: tuple[str, Path], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    u, run_dir = trained
    monkeypatch.setenv("LAYERWISE_TRACKING_URI", u)
    s = store.open_store(u)
    rid = next(r["id"] for r in s.runs(name="wine") if r["path"] == str(run_dir))
    registry.set_alias(s, "carded", "production", registry.register(s, rid, "carded"))
    capsys.readouterr()
    assert main(["runs", "card", rid]) == 0
    md = capsys.readouterr().out
    for part in ("# Model card: wine", "## Model", "family: `mlp`", "## Data",
                 "## Hyperparameters", "| optimizer.lr |", "## Evaluation", "test: accuracy",
                 "| class | precision", "calibration: not measured", "## Lineage",
                 "models:/carded/1", "production", "## Intended use and limitations",
                 f"Intended use: {CARD['intended_use']}", f"Limitations: {CARD['limitations']}",
                 "Owners: lab team"):
        assert part in md, part
    written = (run_dir / "model" / "card.md").read_text(encoding="utf-8")
    assert f"- Intended use: {CARD['intended_use']}" in written and "- Owners: lab team" in written
    out = tmp_path / "card.html"
    assert main(["runs", "card", rid, "--html", "--output", str(out)]) == 0
    page = out.read_text()
    assert page.startswith("<!doctype html>") and "<table>" in page and "models:/carded/1" in page
    assert main(["runs", "card", rid, "--html", "--output", str(tmp_path / "c.md")]) == 2
