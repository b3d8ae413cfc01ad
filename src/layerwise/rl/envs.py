"""Small environments whose optimal policy is known, registered with Gymnasium.

- ``layerwise/Corridor-v0``: walk a corridor of ``length`` cells from the middle. The left
  end pays 0.1, the right end 1.0, both end the episode. The optimal policy is *right* in
  every cell (for γ above 0.1^(1/(length-2))); a myopic agent is lured left near the left
  end. Deterministic. ``image=True`` renders the position as a 1×length image (for CNNs).
- ``layerwise/Reach-v0``: one-step continuous control: the observation is a target in
  [-1, 1], the reward is ``-(action - target)²``. The optimal policy is ``action = target``.
- ``layerwise/Recommend-v0``: the recommendation bandit of :mod:`layerwise.rl.bandit`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

try:
    import gymnasium as gym
except ImportError:  # layerwise.rl.env.require_gym names the package to install
    gym = None  # type: ignore[assignment]

IDS = {
    "layerwise/Corridor-v0": ("layerwise.rl.envs:Corridor", 50),
    "layerwise/Reach-v0": ("layerwise.rl.envs:Reach", None),
    "layerwise/Recommend-v0": ("layerwise.rl.bandit:RecommendEnv", None),
}


def register_all() -> None:
    """Register layerwise's environments with Gymnasium (once; safe to call again)."""
    for env_id, (entry, limit) in IDS.items():
        if env_id not in gym.envs.registry:
            gym.register(id=env_id, entry_point=entry, max_episode_steps=limit)


class Corridor(gym.Env if gym else object):  # type: ignore[misc]
    """A deterministic corridor; see the module docstring."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, length: int = 7, image: bool = False,
                 render_mode: str | None = None) -> None:
        if length < 3:
            raise ValueError(f"length must be at least 3; got {length}")
        self.length = length
        self.image = image
        self.render_mode = render_mode
        self.action_space = gym.spaces.Discrete(2)  # 0: left, 1: right
        if image:
            self.observation_space = gym.spaces.Box(0, 255, (1, length), np.uint8)
        else:
            self.observation_space = gym.spaces.Box(0.0, 1.0, (length,), np.float32)
        self.pos = length // 2

    def _obs(self) -> np.ndarray:
        if self.image:
            img = np.zeros((1, self.length), dtype=np.uint8)
            img[0, self.pos] = 255
            return img
        one_hot = np.zeros(self.length, dtype=np.float32)
        one_hot[self.pos] = 1.0
        return one_hot

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.pos = self.length // 2
        return self._obs(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.pos += 1 if int(action) == 1 else -1
        reward, done = 0.0, False
        if self.pos == 0:
            reward, done = 0.1, True
        elif self.pos == self.length - 1:
            reward, done = 1.0, True
        return self._obs(), reward, done, False, {}

    def render(self) -> np.ndarray:
        img = np.full((24, 24 * self.length, 3), 235, dtype=np.uint8)
        img[:, :24] = (200, 120, 120)
        img[:, -24:] = (120, 200, 120)
        img[6:18, 24 * self.pos + 6: 24 * self.pos + 18] = (40, 40, 160)
        return img


class Reach(gym.Env if gym else object):  # type: ignore[misc]
    """One-step continuous control; see the module docstring."""

    metadata = {"render_modes": []}

    def __init__(self, render_mode: str | None = None) -> None:
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
        self.target = np.zeros(1, dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.target = self.np_random.uniform(-1.0, 1.0, size=1).astype(np.float32)
        return self.target.copy(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        reward = -float(np.square(np.asarray(action, dtype=np.float64) - self.target).sum())
        return self.target.copy(), reward, True, False, {}
