"""The dashboard: every page renders from the store (runs, run, compare, registry, studies),
self-contained (nothing fetched from elsewhere), a token off the loopback; and the pages
load in headless Chromium without console errors (slow)."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from layerwise.tracking import registry, store
from tests.tracking_helpers import sqlite_uri

pytest.importorskip("fastapi")
pytest.importorskip("sqlalchemy")
from layerwise.tracking import webapp  # noqa: E402 (needs fastapi)


def _filled(tmp_path: Path) -> tuple[store.Store, list[str]]:
    s = store.Store(sqlite_uri(tmp_path))
    ids = []
    for i, lr in enumerate((0.1, 0.01)):
        model = tmp_path / f"r{i}" / "model"
        model.mkdir(parents=True)
        (model / "layerwise.json").write_text("{}")
        rid = s.create_run(name=f"run<{i}>", path=str(model.parent), kind="tune",
                           tags={"study": "st", "trial": i, "params": {"lr": lr}},
                           config={"train": {"lr": lr}})
        s.log_metrics(rid, [(k, e, 1.0 / (e + i)) for k in ("train_loss", "val_loss",
                                                            "val_accuracy") for e in (1, 2, 3)])
        s.update_run(rid, status="finished", metrics={"test": {
            "accuracy": 0.8 + i / 10, "labels": ["a", "b"], "confusion_matrix": [[5, 1], [2, 4]],
            "per_class": {"a": {"precision": 0.7, "recall": 0.8, "f1": 0.75, "support": 6}}}})
        ids.append(rid)
    registry.register(s, ids[1], "wine")
    registry.set_alias(s, "wine", "production", 1)
    feature = {"type": "numeric", "test": "ks", "live_count": 300, "psi": 0.4,
               "p_value": 1e-9, "p_adjusted": 4e-9, "drift": True}
    ids.append(s.create_run(name="run<1>", kind="monitor", status="finished",
                            tags={"data": "live.csv", "report": "r1/drift.html"},
                            metrics={"drift": {"rows": 300, "alpha": 0.05, "drift": True,
                                               "drifted": ["b"], "features": {"b": feature}}}))
    return s, ids


def _client(app: Any) -> Any:
    from fastapi.testclient import TestClient

    return TestClient(app)


def test_every_page_renders_self_contained(tmp_path: Path) -> None:
    s, ids = _filled(tmp_path)
    c = _client(webapp.make_app(s))
    pages = {"/": ["run&lt;0&gt;", "test.accuracy", "compare selected"],
             f"/runs/{ids[0]}": ["<svg", "polyline", "Per class", "Confusion", "val_accuracy"],
             f"/compare?ids={ids[0]}&ids={ids[1]}": ["train.lr", "+0.1", "<svg"],
             "/registry": ["models:/wine/1", "production"],
             "/studies": ["st", "lr=0.01", "<svg"],
             "/drift": ["drift: b", "live.csv", f"/drift/{ids[2]}"],
             f"/drift/{ids[2]}": ["<td>b</td>", "r1/drift.html", "ks"]}
    for url, wanted in pages.items():
        r = c.get(url)
        assert r.status_code == 200, url
        for w in wanted:
            assert w in r.text, (url, w)
        assert "<script" not in r.text and not re.search(r'(src|href)="https?://', r.text)
        assert "run<0>" not in r.text  # names are escaped
    assert c.get("/?sort=test.accuracy&desc=1").text.index("run&lt;1&gt;") < \
        c.get("/?sort=test.accuracy&desc=1").text.index("run&lt;0&gt;")
    assert c.get("/?status=failed").text.count("/runs/") == 0
    assert c.get("/runs/nope").status_code == 404


def test_drift_checks_are_recorded_and_shown(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """``layerwise monitor`` records each check; the drift pages list them and name the
    drifted feature."""
    import layerwise as lw
    from layerwise.cli import main
    from tests.test_monitoring import table, write_csv

    uri = sqlite_uri(tmp_path)
    monkeypatch.setenv("LAYERWISE_TRACKING_URI", uri)
    cfg = {"name": "drifty", "seed": 0, "data": {"path": str(write_csv(
        tmp_path / "train.csv", table(400, 0)))},
        "inputs": [{"name": n, "type": "numeric"} for n in "abc"],
        "outputs": [{"name": "y", "type": "category"}], "model": {"family": "mlp",
                                                                   "hidden": [8]},
        "train": {"epochs": 1, "batch_size": 32, "progress": "quiet"}}
    model = lw.train(cfg, output=tmp_path / "run").model_dir
    clean = write_csv(tmp_path / "clean.csv", table(300, 3))
    moved = write_csv(tmp_path / "moved.csv", table(300, 3, shift_b=3.0))
    assert main(["monitor", str(model), str(clean), "-o", str(tmp_path / "r0")]) == 0
    assert main(["monitor", str(model), str(moved), "-o", str(tmp_path / "r1")]) == 1
    s = store.Store(uri)
    checks = s.runs(kind="monitor")
    assert [r["name"] for r in checks] == ["drifty", "drifty"]
    c = _client(webapp.make_app(s))
    listing = c.get("/drift").text
    assert "drift: b" in listing and "no drift" in listing and "moved.csv" in listing
    moved_id = next(r["id"] for r in checks if r["metrics"]["drift"]["drift"])
    report = c.get(f"/drift/{moved_id}").text
    assert "<td>b</td>" in report and "psi" in report and "drift.html" in report
    assert c.get("/drift/nope").status_code == 404


def test_the_token_guards_every_page(tmp_path: Path) -> None:
    s, _ = _filled(tmp_path)
    c = _client(webapp.make_app(s, token="s3cret"))
    assert c.get("/").status_code == 401
    assert c.get("/?token=wrong").status_code == 401
    assert c.get("/registry", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert c.get("/?token=s3cret").status_code == 200
    assert c.get("/registry").status_code == 200  # the cookie set by the first visit


def _serve(app: Any) -> tuple[Any, int]:
    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    for _ in range(100):
        if server.started:
            break
        time.sleep(0.05)
    return server, port


@pytest.mark.slow
def test_pages_load_in_headless_chromium(tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Chromium not installed (Debian package chromium)")
    s, ids = _filled(tmp_path)
    server, port = _serve(webapp.make_app(s))
    try:
        for url in ("/", f"/runs/{ids[0]}", f"/compare?ids={ids[0]}&ids={ids[1]}", "/drift",
                    f"/drift/{ids[2]}"):
            out = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                                  "--enable-logging=stderr", "--v=0", "--dump-dom",
                                  f"http://127.0.0.1:{port}{url}"], capture_output=True,
                                 text=True, timeout=120, check=False)
            assert "</html>" in out.stdout and "layerwise" in out.stdout, out.stderr[-2000:]
            console = [x for x in out.stderr.splitlines() if "CONSOLE" in x or
                       "Uncaught" in x]
            assert not console, console
    finally:
        server.should_exit = True
