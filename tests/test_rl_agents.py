"""Both agents learn the optimal policy of small environments where it is known.

The fast tests use layerwise's own environments (rl/envs.py): in the corridor the optimal
action is "right" in every cell although the left end also pays; in Reach the optimal
continuous action equals the observation. The ``slow`` tests run the example configs to
their Done-means targets (docs/benchmarks.md, "Reinforcement learning").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("gymnasium")

import layerwise as lw
from layerwise.config import parse
from layerwise.rl.policy import Policy
from layerwise.training import Callback
from tests.rl_helpers import CORRIDOR_DQN, CORRIDOR_PPO, config

EXAMPLES = Path(__file__).parent.parent / "examples"
CELLS = np.eye(7, dtype=np.float32)[1:6]  # the corridor's non-terminal cells


def _assert_goes_right(run: lw.Run) -> None:
    policy = lw.load(run.model_dir)
    assert isinstance(policy, Policy)
    assert [policy.predict(cell) for cell in CELLS] == [1] * 5
    assert policy.predict(CELLS).tolist() == [1] * 5  # a batch at once
    ev = run.metrics["evaluation"]
    assert ev["return_mean"] == 1.0 and ev["length_mean"] == 3.0  # straight to the right end


def test_dqn_learns_the_optimal_corridor_policy(tmp_path: Path) -> None:
    cfg = config(CORRIDOR_DQN, agent={"learning_starts": 50, "train_freq": 2, "n_step": 3,
                                      "target_update_interval": 40},
                 train={"total_steps": 500})
    _assert_goes_right(lw.train(cfg, output=tmp_path / "dqn"))


def test_ppo_learns_the_optimal_corridor_policy(tmp_path: Path) -> None:
    _assert_goes_right(lw.train(config(CORRIDOR_PPO), output=tmp_path / "ppo"))


def test_ppo_learns_a_continuous_action(tmp_path: Path) -> None:
    cfg = config(CORRIDOR_PPO, env={"id": "layerwise/Reach-v0"},
                 agent={"gamma": 0.0, "n_steps": 32, "log_std_init": -0.5},
                 train={"total_steps": 3072, "optimizer": {"name": "adam", "lr": 0.01}})
    run = lw.train(cfg, output=tmp_path / "reach")
    policy = lw.load(run.model_dir)
    targets = np.array([[-0.8], [-0.3], [0.2], [0.7]], dtype=np.float32)
    actions = policy.predict(targets)
    assert actions.dtype == np.float32 and actions.shape == (4, 1)
    assert np.abs(actions - targets).max() < 0.15, actions.ravel()
    assert run.metrics["evaluation"]["return_mean"] > -0.02
    assert "action_std" in run.history[-1]


def test_dqn_with_a_cnn_on_image_observations(tmp_path: Path) -> None:
    cfg = config(CORRIDOR_DQN, env={"id": "layerwise/Corridor-v0", "kwargs": {"image": True},
                                    "frame_stack": 2},
                 train={"total_steps": 200})
    cfg["network"] = {"family": "cnn", "blocks": [{"filters": 4}], "batch_norm": False,
                      "dense": [16]}
    run = lw.train(cfg, output=tmp_path / "cnn")
    policy = lw.load(run.model_dir)
    image = np.zeros((1, 7), dtype=np.uint8)
    image[0, 3] = 255
    assert policy.predict(image) in (0, 1)  # a raw uint8 frame, stacked by the policy


class Sabotage(Callback):
    """Make the last policy prefer "left" everywhere, after the evaluations saw "right"."""

    def on_step_end(self, trainer: Any, step: int, logs: Any) -> None:
        if step == trainer.cfg.train.total_steps:
            with torch.no_grad():
                trainer.agent.net.q.bias.copy_(torch.tensor([1e3, -1e3]))


def test_keep_best_saves_the_best_evaluated_policy(tmp_path: Path) -> None:
    cfg = config(CORRIDOR_DQN, agent={"learning_starts": 50, "train_freq": 2, "n_step": 3,
                                      "target_update_interval": 40},
                 train={"total_steps": 500, "eval_every": 250, "keep_best": True})
    run = lw.train(cfg, output=tmp_path / "run", callbacks=[Sabotage()])
    assert run.metrics["final_evaluation"]["return_mean"] == pytest.approx(0.1)  # left end
    assert run.metrics["kept"] == {"policy": "best", "step": 250}
    _assert_goes_right(run)
    assert "best periodic evaluation (step 250)" in (run.model_dir / "card.md").read_text()


# -- the Done-means targets (docs/benchmarks.md); minutes each ------------------------------

TARGETS = [("cartpole_ppo.yaml", 475.0), ("cartpole_dqn.yaml", 475.0),
           ("acrobot_dqn.yaml", -100.0), ("pendulum_ppo.yaml", -300.0)]


@pytest.mark.slow
@pytest.mark.parametrize("name, target", TARGETS, ids=[t[0] for t in TARGETS])
def test_example_reaches_its_target(name: str, target: float, tmp_path: Path) -> None:
    run = lw.train(EXAMPLES / name, output=tmp_path / "run", progress="quiet")
    ev = run.metrics["evaluation"]
    assert ev["episodes"] == 20 and ev["return_mean"] >= target, ev
    assert run.metrics["training"]["env_steps"] <= parse(EXAMPLES / name).train.total_steps


@pytest.mark.slow
def test_recommendation_agent_beats_recommending_the_most_popular_item(tmp_path: Path) -> None:
    from layerwise.rl.bandit import baselines, score

    run = lw.train(EXAMPLES / "recommend_bandit.yaml", output=tmp_path / "run",
                   progress="quiet")
    kwargs = parse(EXAMPLES / "recommend_bandit.yaml").env.kwargs
    base, agent = baselines(**kwargs), score(lw.load(run.model_dir), **kwargs)
    assert agent["expected_return"] > base["most_popular"] + 3.0
    assert agent["expected_return"] > 0.9 * base["oracle"]
