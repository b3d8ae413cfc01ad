"""A recommendation environment: a media platform learns what to suggest from engagement.

Each episode is one user's session of ``session_length`` recommendations. The platform
sees the user's feature vector (tastes inferred from a profile: ``dim`` numbers) and picks
one of ``n_items`` pieces of content. The user engages (watches, likes) with probability

    p(user, item) = sigmoid(temperature · (taste · item + popularity[item]))

and the platform gets +1 for an engagement (positive feedback) and -1 for a skip (negative
feedback). Users come from ``n_segments`` taste segments, so the best item differs from
user to user and the single most popular item is a weak policy. The catalogue (items,
popularity, segments) is fixed by ``catalogue_seed``; the users of an episode are drawn
from the reset seed.

With ``fatigue: 0`` (the default) this is a contextual bandit whose optimal policy is
known: recommend ``argmax_j p(user, j)`` (:meth:`RecommendEnv.oracle_action`). With
``fatigue > 0`` each repeat of an item within a session lowers its appeal, and the best
policy rotates through the user's favourites. :func:`baselines` gives the expected return
of the random, most-popular and oracle policies, and :func:`score` that of a trained
policy (and how often it picks the oracle's item), without the noise of the feedback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

try:
    import gymnasium as gym
except ImportError:  # layerwise.rl.env.require_gym names the package to install
    gym = None  # type: ignore[assignment]


class RecommendEnv(gym.Env if gym else object):  # type: ignore[misc]
    """Simulated users giving engagement feedback; see the module docstring."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, n_items: int = 10, n_segments: int = 4, dim: int = 6,
                 session_length: int = 10, temperature: float = 1.5, fatigue: float = 0.0,
                 catalogue_seed: int = 7, render_mode: str | None = None) -> None:
        self.n_items, self.session_length = n_items, session_length
        self.temperature, self.fatigue = temperature, fatigue
        self.render_mode = render_mode
        cat = np.random.default_rng(catalogue_seed)
        self.items = cat.normal(0.0, 1.0, (n_items, dim)) / np.sqrt(dim) * 2.0
        self.popularity = cat.normal(0.0, 0.5, n_items)
        self.segments = cat.normal(0.0, 1.0, (n_segments, dim))
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32)
        self.action_space = gym.spaces.Discrete(n_items)
        self.user = np.zeros(dim)
        self.shown = np.zeros(n_items)
        self.t = 0
        self.last: tuple[int, bool] | None = None

    def engage_probability(self) -> np.ndarray:
        """p(user, item) for every item, [n_items], given what was shown this session."""
        logits = self.items @ self.user + self.popularity - self.fatigue * self.shown
        return 1.0 / (1.0 + np.exp(-self.temperature * logits))

    def oracle_action(self) -> int:
        """The item most likely to be engaged with now (optimal when fatigue is 0)."""
        return int(np.argmax(self.engage_probability()))

    def _obs(self) -> np.ndarray:
        return self.user.astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        seg = self.np_random.integers(len(self.segments))
        self.user = self.segments[seg] + self.np_random.normal(0.0, 0.5, self.user.shape)
        self.shown[:] = 0
        self.t = 0
        self.last = None
        return self._obs(), {"segment": int(seg)}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = int(action)
        p = self.engage_probability()
        engaged = bool(self.np_random.random() < p[a])
        self.shown[a] += 1
        self.t += 1
        self.last = (a, engaged)
        info = {"engaged": engaged, "p_engage": float(p[a]), "best_p": float(p.max())}
        return self._obs(), 1.0 if engaged else -1.0, self.t >= self.session_length, False, info

    def render(self) -> np.ndarray:
        """Items as cells (greener: likelier to engage), the last pick framed in its feedback
        colour (green: engaged, red: skipped)."""
        cell = 32
        img = np.full((cell + 16, cell * self.n_items, 3), 245, dtype=np.uint8)
        for j, p in enumerate(self.engage_probability()):
            img[8:8 + cell, j * cell + 2:(j + 1) * cell - 2] = (int(230 - 200 * p), 230,
                                                                int(230 - 200 * p))
        if self.last is not None:
            a, engaged = self.last
            colour = (30, 160, 30) if engaged else (200, 40, 40)
            img[:8, a * cell:(a + 1) * cell] = colour
            img[-8:, a * cell:(a + 1) * cell] = colour
        return img


def _users(env: RecommendEnv, episodes: int, seed: int) -> list[np.ndarray]:
    users = []
    for e in range(episodes):
        env.reset(seed=seed + e)
        users.append(env.user.copy())
    return users


def _sessions(env: RecommendEnv, users: list[np.ndarray],
              choose: Callable[[np.ndarray, np.ndarray], int | None]) -> tuple[float, float]:
    """Mean expected session return (2p - 1 per step) and the share of oracle picks of
    ``choose(observation, engage probabilities)``; ``None`` means a uniformly random pick."""
    total, hits, steps = 0.0, 0, 0
    for u in users:
        env.user, env.shown[:] = u, 0
        for _ in range(env.session_length):
            p = env.engage_probability()
            a = choose(u.astype(np.float32), p)
            steps += 1
            if a is None:
                total += float(np.mean(2 * p - 1))
                env.shown += 1.0 / env.n_items
                continue
            total += 2 * float(p[a]) - 1
            hits += int(a == int(np.argmax(p)))
            env.shown[a] += 1
    return total / len(users), hits / steps


def baselines(episodes: int = 2000, seed: int = 0, **kwargs: Any) -> dict[str, float]:
    """Expected session return of the random, most-popular and oracle policies.

    Expectations over engagement (2p - 1 per step), averaged over ``episodes`` users, so
    the numbers have no feedback noise. With fatigue the oracle is the greedy one-step
    policy, a lower bound on the optimum.
    """
    env = RecommendEnv(**kwargs)
    users = _users(env, episodes, seed)
    mean_p = np.zeros(env.n_items)  # the most popular item: the best single one for all
    for u in users:
        env.user, env.shown[:] = u, 0
        mean_p += env.engage_probability()
    popular = int(np.argmax(mean_p))
    return {"random": _sessions(env, users, lambda o, p: None)[0],
            "most_popular": _sessions(env, users, lambda o, p: popular)[0],
            "oracle": _sessions(env, users, lambda o, p: int(np.argmax(p)))[0]}


def score(policy: Any, episodes: int = 2000, seed: int = 0, **kwargs: Any) -> dict[str, float]:
    """A trained recommender's expected session return and how often it picks the best
    item (the oracle's), on the same users as :func:`baselines`: no feedback noise."""
    env = RecommendEnv(**kwargs)
    ret, hits = _sessions(env, _users(env, episodes, seed),
                          lambda o, p: int(policy.predict(o)))
    return {"expected_return": ret, "oracle_agreement": hits}
