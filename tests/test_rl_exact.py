"""RL exactness: same seed ⇒ same weights; crash / SIGTERM / kill -9 + resume ⇒ the same.

The checkpoint carries networks, optimizer, schedule, the agent's generator, the replay
buffer (prioritised, with pending n-step transitions), observation and reward statistics,
and the environments (by seeded reset + action replay), so every configuration below
exercises a piece of state that a resume must restore.
"""

from __future__ import annotations

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

pytest.importorskip("gymnasium")

from layerwise.api import train
from layerwise.errors import CheckpointError
from layerwise.training import Callback
from tests.rl_helpers import CORRIDOR_DQN, CORRIDOR_PPO, assert_identical, config, timeless
from tests.rl_helpers import weights as weights_of

# every stateful option on: normalisation, n-step, prioritised replay, dueling, dropout,
# several environments, a decaying schedule, periodic evaluation and checkpoints
TRAIN = {"total_steps": 400, "eval_every": 150, "log_every": 50, "checkpoint_every": 60,
         "schedule": {"name": "cosine"}, "keep_best": True}
ENV = {"num_envs": 2, "normalize_obs": True, "normalize_reward": True}
NET = {"family": "mlp", "hidden": [16], "dropout": 0.1}
DQN = config(CORRIDOR_DQN, env=ENV, train=TRAIN, network=NET,
             agent={"learning_starts": 40, "train_freq": 2, "n_step": 3,
                    "target_update_interval": 30, "dueling": True, "buffer_size": 150,
                    "gradient_steps": 1,
                    "prioritized": {"alpha": 0.6}, "tau": 0.5})
PPO = config(CORRIDOR_PPO, env=ENV, train=TRAIN, network=NET,
             agent={"n_steps": 10, "batch_size": 8, "n_epochs": 2, "clip_range_vf": 0.2,
                    "target_kl": 0.5, "ent_coef": 0.01, "clip_decay": True})
CONFIGS = {"dqn": DQN, "ppo": PPO}


class Crash(Callback):
    """Raise once the run has passed a given env step, as a crash would."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_end(self, trainer: Any, step: int, logs: Any) -> None:
        if step >= self.at:
            raise RuntimeError("simulated crash")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("rl_ref")
    return {name: train(cfg, output=d / name) for name, cfg in CONFIGS.items()}


def test_same_seed_gives_bit_identical_weights(reference: dict[str, Any],
                                               tmp_path: Path) -> None:
    # (the crash tests below also compare fresh runs of both agents with the reference)
    again = train(PPO, output=tmp_path / "again")
    assert_identical(weights_of(reference["ppo"].dir), weights_of(again.dir))
    assert timeless(again.history) == timeless(reference["ppo"].history)
    other = train(config(PPO, seed=1), output=tmp_path / "other")
    w1, w2 = weights_of(reference["ppo"].dir), weights_of(other.dir)
    assert any(not torch.equal(w1[k], w2[k]) for k in w1)


# DQN at 250: the replay buffer (150) has wrapped; PPO at 130: mid-episode, mid-schedule
@pytest.mark.parametrize("algo, crash_at", [("dqn", 250), ("ppo", 130)])
def test_crash_and_resume_is_exact(algo: str, crash_at: int, reference: dict[str, Any],
                                   tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(CONFIGS[algo], output=tmp_path / "run", callbacks=[Crash(crash_at)])
    assert not (tmp_path / "run" / "model").exists()
    resumed = train(CONFIGS[algo], output=tmp_path / "run", resume=True)
    assert_identical(weights_of(reference[algo].dir), weights_of(resumed.dir))
    assert timeless(resumed.history) == timeless(reference[algo].history)
    assert resumed.metrics["evaluation"] == reference[algo].metrics["evaluation"]


class Terminate(Callback):
    """Send this process SIGTERM at a step: the runner checkpoints and stops cleanly."""

    def __init__(self, at: int) -> None:
        self.at, self.sent = at, False

    def on_step_end(self, trainer: Any, step: int, logs: Any) -> None:
        if step >= self.at and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_checkpoints_stops_and_resumes_exactly(reference: dict[str, Any],
                                                       tmp_path: Path) -> None:
    run = train(PPO, output=tmp_path / "run", callbacks=[Terminate(90)])
    assert run.interrupted and run.step == 100 and not (tmp_path / "run" / "model").exists()
    resumed = train(PPO, output=tmp_path / "run", resume=True)
    assert_identical(weights_of(reference["ppo"].dir), weights_of(resumed.dir))


def test_a_finished_run_can_be_extended(tmp_path: Path) -> None:
    train(config(PPO, train={"total_steps": 60}), output=tmp_path / "run")
    longer = train(config(PPO, train={"total_steps": 120}), output=tmp_path / "run",
                   resume=True)
    assert longer.metrics["training"]["env_steps"] == 120


def test_resume_refuses_a_changed_config_and_starts_over_without_a_checkpoint(
        reference: dict[str, Any], tmp_path: Path) -> None:
    # no checkpoint yet (a requeued job repeats --resume): the run starts from the beginning
    fresh = train(PPO, output=tmp_path / "never", resume=True)
    assert_identical(weights_of(reference["ppo"].dir), weights_of(fresh.dir))
    train(config(PPO, train={"total_steps": 40}), output=tmp_path / "run")
    with pytest.raises(CheckpointError, match="config differs"):
        train(config(PPO, agent={"gamma": 0.5}), output=tmp_path / "run", resume=True)


def test_checkpoint_holds_replay_and_environments_as_tensors(reference: dict[str, Any]
                                                             ) -> None:
    path = reference["dqn"].dir / "checkpoints" / "last.ckpt"
    state = torch.load(path, weights_only=True)
    assert {"agent", "pool", "runner", "rng", "history", "config"} <= set(state)
    buf = state["agent"]["buffer"]
    assert isinstance(buf["obs"], torch.Tensor) and buf["obs"].shape[0] == 150
    assert isinstance(buf["priorities"], torch.Tensor)
    assert isinstance(state["pool"]["actions"][0], torch.Tensor)
    assert not list(path.parent.glob("*.tmp"))


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "layerwise", *args]


@pytest.mark.slow  # three processes that each import torch: slow on a loaded machine
def test_sigkill_then_resume_is_exact(tmp_path: Path) -> None:
    cfg = config(PPO, train={"total_steps": 1200, "checkpoint_every": 40, "eval_every": 0})
    ref = train(cfg, output=tmp_path / "ref")
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    proc = subprocess.Popen(_cli("train", str(path), "--output", str(run), "-q"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt, end = run / "checkpoints" / "last.ckpt", time.monotonic() + 120
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < end:
        time.sleep(0.01)
    assert ckpt.exists(), proc.stderr.read().decode() if proc.stderr else ""
    time.sleep(random.Random().uniform(0.0, 0.3))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if (run / "model").exists():
        pytest.skip("training finished before the kill (a very fast machine)")
    out = subprocess.run(_cli("train", str(path), "--output", str(run), "--resume", "-q"),
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert_identical(weights_of(ref.dir), weights_of(run))
