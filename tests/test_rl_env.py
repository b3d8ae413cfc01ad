"""RL building blocks: config, environments, observation processing, replay, the bandit."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("gymnasium")

from layerwise.config import EnvConfig, PrioritizedReplayConfig, RLConfig, json_schema, parse
from layerwise.errors import CheckpointError, ConfigError
from layerwise.rl.bandit import RecommendEnv, baselines, score
from layerwise.rl.env import EnvPool, ObsProcessor, check_env_id, make_env, space_spec
from layerwise.rl.replay import ReplayBuffer, SumTree
from tests.rl_helpers import CORRIDOR_DQN, CORRIDOR_PPO, config

# -- config ----------------------------------------------------------------------------------


def test_a_config_with_env_parses_as_an_rl_config() -> None:
    cfg = parse(CORRIDOR_PPO)
    assert isinstance(cfg, RLConfig) and cfg.agent.algo == "ppo"
    assert parse(cfg) is cfg
    default = parse({"env": {"id": "CartPole-v1"}, "agent": {"algo": "dqn"}})
    assert isinstance(default, RLConfig) and default.network.family == "mlp"


@pytest.mark.parametrize("section, key, suggestion", [
    ("env", "num_env", "num_envs"),
    ("agent", "n_step", "n_steps"),          # ppo has n_steps
    ("train", "total_step", "total_steps"),
    ("network", "hiden", "hidden"),
])
def test_unknown_rl_keys_are_named_with_the_closest_valid_one(section: str, key: str,
                                                              suggestion: str) -> None:
    raw = config(CORRIDOR_PPO)
    raw[section][key] = 1
    with pytest.raises(ConfigError) as info:
        parse(raw)
    msg = str(info.value)
    assert f"unknown key '{section}.{key}'" in msg and f"did you mean {suggestion!r}" in msg


def test_unknown_algorithm_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="agent.algo must be one of 'dqn', 'ppo'; got 'sac'"):
        parse(config(CORRIDOR_PPO, agent={"algo": "sac"}))


def test_rl_json_schema() -> None:
    schema = json_schema("rl")
    assert set(schema["properties"]) == set(RLConfig.model_fields)
    assert schema["additionalProperties"] is False
    assert set(json_schema()["properties"]) != set(schema["properties"])


# -- environments ----------------------------------------------------------------------------


@pytest.mark.parametrize("bad, close", [("CartPol-v1", "CartPole-v1"),
                                        ("cartpole", "CartPole-v1"),
                                        ("layerwise/Coridor-v0", "layerwise/Corridor-v0")])
def test_unknown_env_id_is_named_with_close_registered_ids(bad: str, close: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_env_id(bad)
    assert repr(bad) in str(info.value) and repr(close) in str(info.value)


def test_unknown_env_id_fails_before_training(tmp_path: Any) -> None:
    from layerwise.api import train

    with pytest.raises(ConfigError, match="'NoSuchEnv-v9' is not a registered"):
        train(config(CORRIDOR_PPO, env={"id": "NoSuchEnv-v9"}), output=tmp_path / "r")


def test_bad_env_kwargs_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not accepted by 'CartPole-v1'"):
        make_env(EnvConfig(id="CartPole-v1", kwargs={"no_such_option": 1}))


def test_dqn_needs_discrete_actions_and_cnn_needs_images(tmp_path: Any) -> None:
    from layerwise.api import train

    with pytest.raises(ConfigError, match="needs a discrete action space.*use agent.algo 'ppo'"):
        train(config(CORRIDOR_DQN, env={"id": "Pendulum-v1"}), output=tmp_path / "a")
    with pytest.raises(ConfigError, match="'cnn' needs image observations"):
        train(dict(config(CORRIDOR_DQN), network={"family": "cnn"}), output=tmp_path / "b")


def test_observation_processing() -> None:
    onehot = ObsProcessor({"type": "discrete", "n": 4, "start": 0}, 2)
    assert onehot.reset(np.array([1, 3])).tolist() == [[0, 1, 0, 0], [0, 0, 0, 1]]
    image = ObsProcessor({"type": "box", "shape": [5, 6, 3], "dtype": "uint8", "image": True},
                         1, frame_stack=2)
    raw = np.full((1, 5, 6, 3), 255, dtype=np.uint8)
    assert image.shape == (6, 5, 6) and float(image.reset(raw).max()) == 1.0
    stack = ObsProcessor({"type": "box", "shape": [2], "dtype": "float32", "image": False}, 1,
                         frame_stack=3)
    stack.reset(np.array([[1.0, 1.0]]))
    assert stack.push(np.array([[2.0, 3.0]])).tolist() == [[1, 1, 1, 1, 2, 3]]  # newest last
    norm = ObsProcessor({"type": "box", "shape": [2], "dtype": "float32", "image": False}, 1,
                        normalize=True)
    rng = np.random.default_rng(0)
    for _ in range(200):
        norm.update(rng.normal([5.0, -3.0], [2.0, 0.5], size=(8, 2)))
    z = norm.frames(rng.normal([5.0, -3.0], [2.0, 0.5], size=(4000, 2)))
    assert torch.allclose(z.mean(0), torch.zeros(2), atol=0.1)
    assert torch.allclose(z.std(0), torch.ones(2), atol=0.1)


def test_env_pool_restores_by_seeded_replay() -> None:
    cfg = EnvConfig(id="CartPole-v1", num_envs=3, normalize_obs=True, normalize_reward=True)
    pool = EnvPool(cfg, seed=5)
    pool.start()
    rng = np.random.default_rng(0)
    for _ in range(40):
        pool.step(rng.integers(0, 2, 3))
    state = pool.state_dict()
    actions = rng.integers(0, 2, (30, 3))
    expected = [pool.step(a) for a in actions]
    again = EnvPool(cfg, seed=5)
    again.load_state_dict(state)
    for a, exp in zip(actions, expected):
        got = again.step(a)
        assert torch.equal(got.obs, exp.obs) and torch.equal(got.reward, exp.reward)
        assert torch.equal(got.done, exp.done)
    state["last_raw"][0] = state["last_raw"][0] + 1.0  # not where the replay leads
    with pytest.raises(CheckpointError, match="did not return to its saved state"):
        EnvPool(cfg, seed=5).load_state_dict(state)


def test_spaces_are_described_and_unsupported_ones_refused() -> None:
    import gymnasium as gym

    assert space_spec(gym.spaces.Discrete(3), "action") == {"type": "discrete", "n": 3,
                                                            "start": 0}
    assert space_spec(gym.spaces.Box(-1, 1, (2,)), "action")["high"] == [1.0, 1.0]
    with pytest.raises(ConfigError, match="not supported"):
        space_spec(gym.spaces.MultiBinary(3), "action")


# -- replay ----------------------------------------------------------------------------------


def _buffer(n_step: int, prioritized: bool = False) -> ReplayBuffer:
    return ReplayBuffer(16, (1,), image=False, n_step=n_step, gamma=0.5, num_envs=1,
                        prioritized=PrioritizedReplayConfig() if prioritized else None)


def _add(buf: ReplayBuffer, t: float, r: float, term: bool = False, trunc: bool = False) -> None:
    o = torch.tensor([[t]])
    buf.add(o, torch.tensor([0]), torch.tensor([r]), o + 1, torch.tensor([term]),
            torch.tensor([term or trunc]))


def test_n_step_returns_and_discounts() -> None:
    buf = _buffer(n_step=3)
    for t, r in enumerate([1.0, 2.0, 4.0, 8.0]):
        _add(buf, t, r)
    _add(buf, 4, 16.0, term=True)
    # from t=0: 1 + .5*2 + .25*4 = 3, next obs 3, discount .5^3 = .125
    assert buf.rewards[:5].tolist() == [3.0, 6.0, 12.0, 16.0, 16.0]
    assert buf.next_obs[:5, 0].tolist() == [3.0, 4.0, 5.0, 5.0, 5.0]
    assert buf.discounts[:5].tolist() == [0.125, 0.125, 0.0, 0.0, 0.0]  # terminal: no bootstrap
    cut = _buffer(n_step=2)
    _add(cut, 0, 1.0)
    _add(cut, 1, 1.0, trunc=True)  # a time limit: bootstrap from the last observation
    assert cut.rewards[:2].tolist() == [1.5, 1.0] and cut.discounts[:2].tolist() == [0.25, 0.5]


def test_prioritised_sampling_prefers_large_errors_and_survives_a_checkpoint() -> None:
    buf = _buffer(n_step=1, prioritized=True)
    for t in range(10):
        _add(buf, t, 0.0)
    buf.update_priorities(torch.arange(10), torch.tensor([0.01] * 9 + [10.0]))
    gen = torch.Generator().manual_seed(0)
    batch = buf.sample(64, gen, beta=0.4)
    assert (batch["indices"] == 9).float().mean() > 0.5
    assert float(batch["weights"].max()) == 1.0 and float(batch["weights"].min()) < 1.0
    again = _buffer(n_step=1, prioritized=True)
    again.load_state_dict(buf.state_dict())
    assert np.array_equal(again.tree.tree, buf.tree.tree)  # type: ignore[union-attr]
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(buf.sample(8, g1)["indices"], again.sample(8, g2)["indices"])


def test_sum_tree_finds_prefix_sums() -> None:
    tree = SumTree(5)
    tree.update(np.arange(5), np.array([1.0, 0.0, 2.0, 3.0, 4.0]))
    assert tree.total == 10.0
    assert tree.find(np.array([0.5, 1.0, 2.9, 3.0, 9.99])).tolist() == [0, 2, 2, 3, 4]


# -- the recommendation bandit ---------------------------------------------------------------


def test_bandit_baselines_and_oracle() -> None:
    base = baselines(episodes=200)
    assert base["random"] < base["most_popular"] < base["oracle"]
    env = RecommendEnv()
    obs, info = env.reset(seed=3)
    assert obs.shape == (6,) and env.action_space.n == 10
    best = env.oracle_action()
    _, reward, done, _, info = env.step(best)
    assert reward in (1.0, -1.0) and info["p_engage"] == info["best_p"]
    assert env.render().shape[2] == 3

    class Always:  # a recommender that always suggests item 0
        def predict(self, observation: np.ndarray) -> int:
            return 0

    always = score(Always(), episodes=200)
    assert always["expected_return"] <= base["most_popular"]  # the best single item
    assert 0.0 <= always["oracle_agreement"] < 1.0
