"""The tracking store: schema and migrations, reads and writes, concurrent writers (SQLite
and a real PostgreSQL server), and the hooks that record every run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from layerwise.tracking import recorder, store
from tests.tracking_helpers import postgres_server, sqlite_uri

pytest.importorskip("sqlalchemy")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A PostgreSQL server: ``$LAYERWISE_TEST_POSTGRES_URL`` (a superuser URL of a running
    server), else a throwaway cluster started from the Debian binaries."""
    given = os.environ.get("LAYERWISE_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    with postgres_server() as url:
        yield url


def _fresh_pg_database(server: str) -> str:
    import sqlalchemy as sa

    name = f"t_{uuid.uuid4().hex[:12]}"
    eng = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.exec_driver_sql(f"CREATE DATABASE {name}")
    eng.dispose()
    return server.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def uri(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
        ) -> str:
    """A fresh, empty store: SQLite in tmp_path, or a new database on the test server."""
    if request.param == "sqlite":
        u = sqlite_uri(tmp_path)
    else:
        u = _fresh_pg_database(request.getfixturevalue("pg_server"))
    monkeypatch.setenv("LAYERWISE_TRACKING_URI", u)
    monkeypatch.setattr(recorder, "_warned", False)
    return u


def test_migrations_head_matches_the_schema(uri: str) -> None:
    """HEAD names the newest migration, and the migrated database has exactly schema.py's
    tables and columns (a schema change without its migration fails here)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from layerwise.tracking import schema

    scripts = ScriptDirectory(str(Path(store.__file__).parent / "migrations"))
    assert scripts.get_current_head() == store.HEAD
    s = store.Store(uri)
    with s.engine.connect() as c:
        version = c.exec_driver_sql(f"SELECT version_num FROM {store.VERSION_TABLE}")
        assert version.scalar() == "0001"
        ctx = MigrationContext.configure(c, opts={"version_table": store.VERSION_TABLE})
        diff = compare_metadata(ctx, schema.metadata)
    assert [d for d in diff if d[0] not in ("add_index", "remove_index")] == []
    assert store.VERSION_TABLE != "alembic_version"  # that name is the tuning library's
    store.Store(uri).close()  # opening again: already at HEAD, nothing to do
    s.close()


def test_a_store_with_the_old_version_table_name_opens_and_keeps_its_runs(
        tmp_path: Path) -> None:
    """Stores made before the version table had its own name keep their revision in
    ``alembic_version``; opening one must not try to create its tables again."""
    import sqlite3

    uri = sqlite_uri(tmp_path)
    rid = store.Store(uri).create_run(name="old", kind="train")
    db = sqlite3.connect(uri.removeprefix("sqlite:///"))
    db.execute(f"ALTER TABLE {store.VERSION_TABLE} RENAME TO alembic_version")
    db.commit()
    db.close()
    reopened = store.Store(uri)
    assert [r["id"] for r in reopened.runs()] == [rid]
    reopened.create_run(name="new", kind="train")
    assert len(store.Store(uri).runs()) == 2


def test_runs_metrics_artifacts_round_trip(uri: str) -> None:
    s = store.Store(uri)
    a = s.create_run(name="alpha", path="/x/alpha", config={"lr": 0.1}, seed=3)
    time.sleep(0.01)
    b = s.create_run(name="beta", kind="tune", config={"lr": 0.2})
    assert s.log_metrics(a, [("loss", 1, 0.5), ("loss", 2, 0.25), ("acc", 1, None)]) == 3
    s.log_metrics(a, [("loss", 2, 9.0)])  # already stored: kept, not duplicated
    assert s.metric_rows(a) == [("acc", 1, None), ("loss", 1, 0.5), ("loss", 2, 0.25)]
    s.set_artifacts(a, [("model/w.safetensors", 10, "ab" * 32)])
    s.update_run(a, status="finished", metrics={"test": {"accuracy": 0.9}})
    assert [r["name"] for r in s.runs()] == ["beta", "alpha"]  # newest first
    assert [r["name"] for r in s.runs(status="finished")] == ["alpha"]
    assert [r["name"] for r in s.runs(kind="tune")] == ["beta"]
    assert [r["name"] for r in s.runs(name="al*")] == ["alpha"]
    assert s.run("alpha")["id"] == a and s.run(a[:6])["id"] == a and s.run(b)["seed"] is None
    assert s.run(a)["metrics"] == {"test": {"accuracy": 0.9}}
    assert s.artifacts(a)[0]["sha256"] == "ab" * 32
    with pytest.raises(Exception, match="no run 'gamma'"):
        s.run("gamma")
    s.delete_run(a)
    assert s.count_metrics() == 0 and s.artifacts(a) == [] and len(s.runs()) == 1
    s.close()


WORKER = r"""
import json, sys, time
from layerwise.config import parse
from layerwise.tracking import recorder
cfg = parse({**json.loads(sys.argv[5]), "name": f"worker{sys.argv[1]}"})
path, epochs, start = sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
while time.time() < start:  # all four begin together, on a store none has created yet
    time.sleep(0.005)
recorder.begin(path, cfg, environment={"worker": sys.argv[1]})
for e in range(1, epochs + 1):
    recorder.log_epoch(path, e, {"epoch": e, "train_loss": 1 / e, "val_loss": 2 / e,
                                 "val_accuracy": e / epochs, "lr": 0.01, "time": 0.1 * e})
recorder.log_final(path, {"test": {"accuracy": 1.0}})
recorder.end(path)
"""


def _workers(tmp_path: Path, n: int, epochs: int, env: dict[str, str]) -> list[Any]:
    from tests.conftest import TINY_MLP

    start = time.time() + 3.0
    root = Path(__file__).parent.parent
    return [subprocess.Popen([sys.executable, "-c", WORKER, str(i), str(tmp_path / f"r{i}"),
                              str(epochs), str(start), json.dumps(TINY_MLP)], cwd=root, env=env,
                             stderr=subprocess.PIPE, text=True) for i in range(n)]


def test_four_concurrent_writers_lose_nothing(uri: str, tmp_path: Path) -> None:
    """Four processes open a new store at once and write 60 epochs each (one transaction
    per epoch): no 'database is locked', every metric row is there."""
    env = {**os.environ, "LAYERWISE_TRACKING_URI": uri, "OMP_NUM_THREADS": "1"}
    procs = _workers(tmp_path, 4, 60, env)
    errs = [p.communicate(timeout=240)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errs
    assert not any("locked" in e or "tracking failed" in e for e in errs), errs
    s = store.Store(uri)
    runs = s.runs()
    assert sorted(r["name"] for r in runs) == [f"worker{i}" for i in range(4)]
    assert {r["status"] for r in runs} == {"finished"}
    assert [s.count_metrics(r["id"]) for r in runs] == [60 * 5] * 4  # time, lr, 2 losses, acc
    assert s.count_metrics() == 4 * 60 * 5
    s.close()


def test_a_broken_store_warns_once_and_the_run_goes_on(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       tiny_mlp: dict[str, Any]) -> None:
    import layerwise as lw

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("LAYERWISE_TRACKING_URI", f"sqlite:///{blocker}/sub/layerwise.db")
    monkeypatch.setattr(recorder, "_warned", False)
    with pytest.warns(RuntimeWarning, match="run tracking failed") as caught:
        run = lw.train(tiny_mlp, output=tmp_path / "run")
    assert run.metrics["test"]["accuracy"] > 0 and run.model_dir.is_dir()
    assert len([w for w in caught if "tracking" in str(w.message)]) == 1


def test_tracking_off_writes_no_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      tiny_mlp: dict[str, Any]) -> None:
    import layerwise as lw

    monkeypatch.setenv("LAYERWISE_TRACKING_URI", sqlite_uri(tmp_path))
    monkeypatch.setenv("LAYERWISE_TRACKING", "off")
    lw.train(tiny_mlp, output=tmp_path / "run")
    assert not (tmp_path / "layerwise.db").exists()


def test_a_training_run_is_recorded_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          tiny_mlp: dict[str, Any]) -> None:
    """Config and hash, data hash, seed, environment, every epoch's metrics, final metrics,
    artifacts with their sha256, duration and status."""
    import layerwise as lw
    from layerwise.config import config_hash

    monkeypatch.setenv("LAYERWISE_TRACKING_URI", sqlite_uri(tmp_path))
    run = lw.train(tiny_mlp, output=tmp_path / "run")
    s = store.open_store()
    (r,) = s.runs()
    assert r["status"] == "finished" and r["path"] == str((tmp_path / "run").absolute())
    assert r["config_hash"] == config_hash(run.config) and r["seed"] == 0
    meta = json.loads((run.model_dir / "layerwise.json").read_text())
    assert r["data_hash"] == meta["lineage"]["data_hash"]
    assert {"versions", "cpu_kind", "git_commit"} <= set(r["environment"])
    assert r["metrics"]["test"]["accuracy"] == run.metrics["test"]["accuracy"]
    assert r["duration_s"] > 0
    rows = s.metric_rows(r["id"])
    assert sorted(st for k, st, _ in rows if k == "train_loss") == [1, 2, 3]
    val = [v for k, st, v in rows if k == "val_accuracy"]
    assert val == pytest.approx([h["val_accuracy"] for h in run.history])
    files = {a["path"]: a for a in s.artifacts(r["id"])}
    weights = next(p for p in files if p.startswith("model/") and p.endswith(".safetensors"))
    assert files[weights]["sha256"] == recorder.sha256(run.dir / weights)
    assert not any(p.startswith("checkpoints/") for p in files)


def test_failed_interrupted_and_resumed_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             tiny_mlp: dict[str, Any]) -> None:
    from layerwise.config import parse
    from layerwise.runs import open_run, recording_failure

    monkeypatch.setenv("LAYERWISE_TRACKING_URI", sqlite_uri(tmp_path))
    cfg = parse(tiny_mlp)
    rd = open_run(cfg, tmp_path / "a")
    with pytest.raises(ValueError), recording_failure(rd):
        raise ValueError("bad row 7")
    rd = open_run(cfg, tmp_path / "b")
    with pytest.raises(KeyboardInterrupt), recording_failure(rd):
        raise KeyboardInterrupt
    again = open_run(cfg, tmp_path / "b", resume=True)  # continues b's record
    with recording_failure(again):
        pass  # ended without final metrics: interrupted again
    s = store.open_store()
    by_path = {Path(r["path"]).name: r for r in s.runs()}
    assert len(s.runs()) == 2
    assert by_path["a"]["status"] == "failed" and "bad row 7" in by_path["a"]["error"]
    assert by_path["b"]["status"] == "interrupted"


@pytest.mark.slow
def test_four_runs_training_at_once_into_one_sqlite_store(tmp_path: Path,
                                                          tiny_mlp: dict[str, Any]) -> None:
    """Four ``layerwise train`` processes at once, one SQLite store: no 'database is
    locked', each run finished with every epoch's metric rows (counted against its
    history.csv)."""
    import csv

    import yaml

    uri = sqlite_uri(tmp_path)
    env = {**os.environ, "LAYERWISE_TRACKING_URI": uri, "OMP_NUM_THREADS": "1"}
    tiny_mlp["train"]["epochs"] = 8
    procs = []
    for i in range(4):
        cfg = tmp_path / f"c{i}.yaml"
        cfg.write_text(yaml.safe_dump({**tiny_mlp, "name": f"par{i}", "seed": i}))
        procs.append(subprocess.Popen([sys.executable, "-m", "layerwise", "train", str(cfg),
                                       "--output", str(tmp_path / f"run{i}"), "--quiet"],
                                      env=env, stderr=subprocess.PIPE, text=True))
    errs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errs
    assert not any("locked" in e or "tracking failed" in e for e in errs), errs
    s = store.Store(uri)
    runs = {r["name"]: r for r in s.runs()}
    assert sorted(runs) == [f"par{i}" for i in range(4)]
    for i in range(4):
        with (tmp_path / f"run{i}" / "history.csv").open() as f:
            rows = list(csv.DictReader(f))
        numeric = sum(1 for row in rows for k, v in row.items()
                      if k not in ("epoch", "step") and v not in ("", None))
        assert runs[f"par{i}"]["status"] == "finished"
        assert s.count_metrics(runs[f"par{i}"]["id"]) == numeric
    s.close()


def test_studies_share_the_server_database(uri: str, tmp_path: Path) -> None:
    """A tuning study's tables (their own alembic version table) beside the store's: both
    open, both work, in either order."""
    optuna = pytest.importorskip("optuna")
    from layerwise.experiments.tune import storage_for

    s = store.Store(uri)
    study = optuna.create_study(study_name="shared", storage=storage_for(uri, tmp_path))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    again = store.Store(uri)  # the store still opens (its version table is its own)
    rid = again.create_run(name="after-study")
    assert again.run(rid)["name"] == "after-study"
    loaded = optuna.load_study(study_name="shared", storage=storage_for(uri, tmp_path))
    assert len(loaded.trials) == 2
    if uri.startswith("sqlite"):  # SQLite: the study is in a journal beside the store
        assert (tmp_path / "layerwise.studies.journal").is_file()
    s.close()
    again.close()
