"""Exactness: same seed ⇒ identical weights; kill -9 / SIGTERM / crash + resume ⇒ identical."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file

from layerwise.api import train
from tests.model_helpers import Crash


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(model_dir / "model.safetensors"))


def assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"tensor {k} differs"


# each precision is forced in turn, on every machine kind (bf16 is emulated, and slow, on
# CPUs without AVX512_BF16, but these runs are small)
PRECISIONS = ["fp32", "bf16"]


@pytest.mark.parametrize("precision", PRECISIONS)
def test_same_seed_gives_bit_identical_weights(tiny_cnn: dict[str, Any], tmp_path: Path,
                                               precision: str) -> None:
    tiny_cnn["train"]["precision"] = precision
    r1 = train(tiny_cnn, output=tmp_path / "a")
    r2 = train(tiny_cnn, output=tmp_path / "b")
    assert_identical(weights(r1.model_dir), weights(r2.model_dir))
    assert r1.metrics["test"]["accuracy"] == r2.metrics["test"]["accuracy"]
    assert r1.metrics["choices"]["precision"] == precision


@pytest.mark.parametrize("precision", PRECISIONS)
def test_same_seed_runs_in_separate_processes_write_byte_identical_weights(
        tiny_cnn: dict[str, Any], tmp_path: Path, precision: str) -> None:
    # the safetensors header was serialised in a per-process hash order: equal tensors,
    # different bytes. A file hash must identify a model.
    import hashlib

    tiny_cnn["train"].update(precision=precision, epochs=1)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_cnn))
    digests = []
    for name in ("a", "b"):
        out = subprocess.run(_cli("train", str(cfg), "--output", str(tmp_path / name), "-q"),
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        blob = (tmp_path / name / "model" / "model.safetensors").read_bytes()
        digests.append(hashlib.sha256(blob).hexdigest())
    assert digests[0] == digests[1]


def test_different_seed_gives_different_weights(tiny_mlp: dict[str, Any], tmp_path: Path) -> None:
    r1 = train(tiny_mlp, output=tmp_path / "a")
    tiny_mlp["seed"] = 1
    r2 = train(tiny_mlp, output=tmp_path / "b")
    w1, w2 = weights(r1.model_dir), weights(r2.model_dir)
    assert any(not torch.equal(w1[k], w2[k]) for k in w1)


@pytest.mark.parametrize(("crash_step", "precision"),
                         [(3, "fp32"), (6, "fp32"), (11, "fp32"), (6, "bf16")])
def test_crash_and_resume_is_exact(tiny_cnn: dict[str, Any], tmp_path: Path,
                                   crash_step: int, precision: str) -> None:
    # accumulation, augmentation and dropout all draw on state the checkpoint must carry
    tiny_cnn["train"].update(epochs=3, checkpoint_every=2, accumulate=2, precision=precision,
                             schedule={"name": "onecycle"},
                             early_stopping={"monitor": "val_accuracy", "patience": 5})
    ref = train(tiny_cnn, output=tmp_path / "ref")
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(tiny_cnn, output=tmp_path / "run", callbacks=[Crash(crash_step)])
    assert not (tmp_path / "run" / "model").exists()
    resumed = train(tiny_cnn, output=tmp_path / "run", resume=True)
    assert_identical(weights(ref.model_dir), weights(resumed.model_dir))
    assert resumed.history == ref.history or [
        {k: v for k, v in h.items() if k != "time"} for h in resumed.history] == [
        {k: v for k, v in h.items() if k != "time"} for h in ref.history]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "layerwise", *args]


def _wait_for(path: Path, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            out = proc.stderr.read().decode() if proc.stderr else ""
            raise AssertionError(f"training ended before a checkpoint appeared: {out}")
        if time.monotonic() > end:
            proc.kill()
            raise AssertionError("no checkpoint appeared")
        time.sleep(0.02)


def _long_config(tiny_cnn: dict[str, Any], tmp_path: Path) -> Path:
    tiny_cnn["data"]["limit"] = 600
    tiny_cnn["train"].update(epochs=4, checkpoint_every=3, batch_size=16)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(tiny_cnn))
    return path


def test_sigkill_at_random_step_then_resume_is_exact(tiny_cnn: dict[str, Any],
                                                      tmp_path: Path) -> None:
    cfg = _long_config(tiny_cnn, tmp_path)
    # the reference run also measures how long training goes on after its first checkpoint,
    # so the kill below lands at a random point inside that window on any machine
    ref = tmp_path / "ref"
    proc = subprocess.Popen(_cli("train", str(cfg), "--output", str(ref), "-q"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_for(ref / "checkpoints" / "last.ckpt", proc)
    start = time.monotonic()
    _wait_for(ref / "model", proc)  # appears when the training loop is over
    window = time.monotonic() - start
    assert proc.wait() == 0
    run = tmp_path / "run"
    proc = subprocess.Popen(_cli("train", str(cfg), "--output", str(run), "-q"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_for(run / "checkpoints" / "last.ckpt", proc)
    delay = random.Random().uniform(0.0, 0.7 * window)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    if (run / "model").exists():
        pytest.fail(f"training finished before the kill (delay {delay:.2f}s of {window:.2f}s)")
    out = subprocess.run(_cli("train", str(cfg), "--output", str(run), "--resume", "-q"),
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert_identical(weights(ref / "model"), weights(run / "model"))


def test_sigterm_checkpoints_and_exits_zero(tiny_cnn: dict[str, Any], tmp_path: Path) -> None:
    cfg = _long_config(tiny_cnn, tmp_path)
    ref = train(yaml.safe_load(cfg.read_text()), output=tmp_path / "ref")
    run = tmp_path / "run"
    proc = subprocess.Popen(_cli("train", str(cfg), "--output", str(run), "-q"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_for(run / "checkpoints" / "last.ckpt", proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert b"SIGTERM" in err and b"--resume" in err
    assert not (run / "model").exists()
    out = subprocess.run(_cli("train", str(cfg), "--output", str(run), "--resume", "-q"),
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert_identical(weights(ref.model_dir), weights(run / "model"))


def test_resume_refuses_a_changed_config(tiny_mlp: dict[str, Any], tmp_path: Path) -> None:
    from layerwise.errors import CheckpointError

    train(tiny_mlp, output=tmp_path / "run")
    tiny_mlp["model"]["hidden"] = [8]
    with pytest.raises(CheckpointError, match="config differs"):
        train(tiny_mlp, output=tmp_path / "run", resume=True)


def test_resume_before_the_first_checkpoint_starts_from_the_beginning(
        tiny_mlp: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a requeued job repeats its command line, --resume included: a run killed before it
    # wrote a checkpoint (or before it wrote anything) starts over, and says so
    ref = train(tiny_mlp, output=tmp_path / "ref")
    fresh = train(tiny_mlp, output=tmp_path / "never", resume=True)
    assert "starting from the beginning" in capsys.readouterr().err
    assert_identical(weights(ref.model_dir), weights(fresh.model_dir))
    tiny_mlp["train"]["checkpoint_every"] = 0   # epoch ends only: the crash comes first
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(tiny_mlp, output=tmp_path / "early", callbacks=[Crash(2)])
    assert (tmp_path / "early" / "config.yaml").exists()
    assert not (tmp_path / "early" / "checkpoints" / "last.ckpt").exists()
    again = train(tiny_mlp, output=tmp_path / "early", resume=True)
    assert "starting from the beginning" in capsys.readouterr().err
    assert_identical(weights(ref.model_dir), weights(again.model_dir))


def test_resume_refuses_a_checkpoint_without_its_config(tiny_mlp: dict[str, Any],
                                                       tmp_path: Path) -> None:
    from layerwise.errors import CheckpointError

    train(tiny_mlp, output=tmp_path / "run")
    (tmp_path / "run" / "config.yaml").unlink()
    with pytest.raises(CheckpointError, match="no config.yaml"):
        train(tiny_mlp, output=tmp_path / "run", resume=True)


def test_checkpoint_file_is_loadable_with_weights_only(tiny_mlp: dict[str, Any],
                                                       tmp_path: Path) -> None:
    train(tiny_mlp, output=tmp_path / "run")
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "rng", "trainer"} <= set(state)
    assert not list((tmp_path / "run" / "checkpoints").glob("*.tmp"))
    assert os.path.getsize(tmp_path / "run" / "checkpoints" / "last.ckpt") > 0


def test_the_sigterm_hint_keeps_the_set_overrides(tiny_cnn: dict[str, Any],
                                                  tmp_path: Path) -> None:
    # regression: the printed "continue with" line dropped --set, so it went on as a run
    # of the config's own length (or failed: "the config differs")
    import shlex

    cfg = _long_config(tiny_cnn, tmp_path)
    run = tmp_path / "run"
    sets = ["--set", "train.epochs=3", "--set", "train.optimizer.lr=0.01"]
    proc = subprocess.Popen(_cli("train", str(cfg), "--output", str(run), "-q", *sets),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_for(run / "checkpoints" / "last.ckpt", proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    hint = err.decode().split("continue with: ", 1)[1].strip()
    assert "--set train.epochs=3" in hint and "--set train.optimizer.lr=0.01" in hint
    words = shlex.split(hint)
    assert words[:2] == ["layerwise", "train"]
    out = subprocess.run(_cli(*words[1:], "-q"), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["epochs"] == 3
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["training"]["epochs"] == 3
