"""``layerwise report``: one self-contained HTML page per run, opened in headless Chromium
with no console errors."""

from __future__ import annotations

import base64
import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

import layerwise as lw
from layerwise.cli import main
from layerwise.errors import ArtifactError
from layerwise.explain.report import build_report

pytestmark = pytest.mark.usefixtures("one_thread")
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium"
                                         if Path("/usr/bin/chromium").exists() else None)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import TINY_CNN

    out = tmp_path_factory.mktemp("report") / "run"
    cfg = copy.deepcopy(TINY_CNN)
    cfg["train"]["epochs"] = 3
    lw.train(cfg, output=out)
    # the evaluation folder `layerwise evaluate` writes (per-class, confusion, calibration)
    assert main(["evaluate", str(out / "model"), "--no-speed", "--folder",
                 str(out / "evaluation")]) == 0
    return out


@pytest.mark.slow  # a training run and its detailed evaluation: ~35 s on a loaded machine
def test_report_holds_every_section_and_needs_no_network(run_dir: Path, tmp_path: Path
                                                         ) -> None:
    out = tmp_path / "r.html"
    assert main(["report", str(run_dir), "--output", str(out), "--rows", "2"]) == 0
    page = out.read_text()
    for title in ("Scores", "Config", "Learning curves", "Per-class results",
                  "Confusion matrix", "Calibration", "Attributions", "Doctor", "Model card"):
        assert f"<h2>{title}" in page, title
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "an external reference"
    assert "<script" not in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) >= 3  # curves, two attribution maps, evaluation plots
    for b64 in images:
        assert base64.b64decode(b64)[:8] == b"\x89PNG\r\n\x1a\n"


def _chromium(page: Path, shot: Path) -> str:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--enable-logging=stderr", "--v=0", "--window-size=1200,1800",
           f"--screenshot={shot}", page.resolve().as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    return done.stdout + done.stderr


def console_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if ":CONSOLE" in line]


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed "
                    "(apt-get install chromium); the browser check needs it")
def test_report_opens_in_headless_chromium_without_console_errors(
        run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    out.write_text(build_report(run_dir, rows=2))
    log = _chromium(out, tmp_path / "shot.png")
    assert console_lines(log) == [], console_lines(log)
    assert (tmp_path / "shot.png").stat().st_size > 10_000
    # the check itself can fail: a page with a script error is caught
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>notDefined()</script></body></html>")
    assert console_lines(_chromium(bad, tmp_path / "bad.png"))


def test_not_a_run_folder_is_a_clear_error(tmp_path: Path, capsys: Any) -> None:
    with pytest.raises(ArtifactError, match="no config.yaml"):
        build_report(tmp_path)
    assert main(["report", str(tmp_path)]) == 2
    assert "no config.yaml" in capsys.readouterr().err
