"""Environments: Gymnasium ids → a vector of environments with observation processing.

    >>> pool = EnvPool(EnvConfig(id="CartPole-v1", num_envs=4), seed=0)   # doctest: +SKIP
    >>> obs = pool.start()                       # [4, 4] float32, processed
    >>> out = pool.step(np.zeros(4, dtype=int))  # out.obs, out.reward, out.done, out.final_obs

Raw observations become network inputs in :class:`ObsProcessor`: a Discrete observation
becomes a one-hot vector, an image (uint8, HWC) becomes CHW floats in [0, 1], a vector is
standardised with running statistics (``normalize_obs``), and the last ``frame_stack``
frames are stacked. The same processor (with frozen statistics) runs inside the policy
artifact, so a loaded policy accepts raw observations.

Exact resume without pickling environments: every episode starts from a seed that is a
pure function of (run seed, env index, episode number), and :class:`EnvPool` records the
actions taken since. Restoring a checkpoint resets each environment with its episode seed
and replays those actions, then checks that the observation matches the saved one.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from layerwise.config import EnvConfig
from layerwise.errors import CheckpointError, ConfigError, MissingDependencyError

INSTALL = "pip install 'layerwise[rl]'"


def require_gym() -> Any:
    """Import gymnasium (and register layerwise's own environments), or say what to install."""
    try:
        import gymnasium
    except ImportError:
        raise MissingDependencyError("reinforcement learning needs the gymnasium package; "
                                     f"install it with: {INSTALL}") from None
    from layerwise.rl import envs

    envs.register_all()
    return gymnasium


def check_env_id(env_id: str) -> None:
    """Raise a ConfigError naming the id and the closest registered ids when it is unknown."""
    gym = require_gym()
    registry = gym.envs.registry
    if env_id in registry:
        return
    names = list(registry)
    close = difflib.get_close_matches(env_id, names, n=3, cutoff=0.6)
    if not close:  # e.g. "cartpole" vs "CartPole-v1": compare case-insensitively too
        lower = {n.lower(): n for n in names}
        close = [lower[n] for n in difflib.get_close_matches(env_id.lower(), lower, n=3,
                                                             cutoff=0.5)]
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ConfigError(f"env.id {env_id!r} is not a registered Gymnasium environment{hint} "
                      "(gymnasium.envs.registry lists them all)")


def make_env(cfg: EnvConfig, render_mode: str | None = None) -> Any:
    """One Gymnasium environment for ``cfg`` (time limit included), with clear errors."""
    gym = require_gym()
    check_env_id(cfg.id)
    kwargs = dict(cfg.kwargs)
    if cfg.max_episode_steps is not None:
        kwargs["max_episode_steps"] = cfg.max_episode_steps
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    try:
        return gym.make(cfg.id, **kwargs)
    except gym.error.DependencyNotInstalled as e:
        raise MissingDependencyError(f"environment {cfg.id!r} needs a package that is not "
                                     f"installed: {e}") from None
    except TypeError as e:
        raise ConfigError(f"env.kwargs {cfg.kwargs} are not accepted by {cfg.id!r}: "
                          f"{e}") from None


def space_spec(space: Any, what: str) -> dict[str, Any]:
    """A JSON description of a Box or Discrete space (the only kinds layerwise supports)."""
    gym = require_gym()
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.Box):
        spec: dict[str, Any] = {"type": "box", "shape": list(space.shape),
                                "dtype": str(space.dtype)}
        if what == "action":  # actions are clipped to the bounds
            spec["low"] = space.low.astype(np.float64).tolist()
            spec["high"] = space.high.astype(np.float64).tolist()
        else:
            spec["image"] = bool(space.dtype == np.uint8 and len(space.shape) in (2, 3))
        return spec
    raise ConfigError(f"the {what} space {space} is not supported; layerwise handles Box and "
                      "Discrete spaces")


class RunningMeanStd:
    """Mean and variance of a stream of vectors (parallel Welford update, float64)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.mean = torch.zeros(shape, dtype=torch.float64)
        self.var = torch.ones(shape, dtype=torch.float64)
        self.count = 1e-4  # as in Stable-Baselines3: avoids a division by zero at the start

    def update(self, x: torch.Tensor) -> None:
        x = x.to(torch.float64)
        b_mean, b_var, n = x.mean(0), x.var(0, unbiased=False), x.shape[0]
        delta = b_mean - self.mean
        total = self.count + n
        self.mean = self.mean + delta * n / total
        m2 = self.var * self.count + b_var * n + delta.square() * self.count * n / total
        self.var = m2 / total
        self.count = total

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.clone(), "var": self.var.clone(), "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean = torch.as_tensor(state["mean"], dtype=torch.float64).clone()
        self.var = torch.as_tensor(state["var"], dtype=torch.float64).clone()
        self.count = float(state["count"])


class ObsProcessor:
    """Raw observations of ``num_envs`` environments → stacked network inputs."""

    def __init__(self, spec: dict[str, Any], num_envs: int, *, normalize: bool = False,
                 clip: float = 10.0, frame_stack: int = 1,
                 rms: RunningMeanStd | None = None) -> None:
        self.spec = spec
        self.kind = "onehot" if spec["type"] == "discrete" else \
            "image" if spec.get("image") else "vector"
        if self.kind == "onehot":
            self.frame_shape: tuple[int, ...] = (spec["n"],)
        elif self.kind == "image":
            shape = spec["shape"]
            if len(shape) == 2:
                self.frame_shape = (1, *shape)
            else:  # HWC (Gymnasium's convention) unless the first axis looks like channels
                self.hwc = shape[-1] <= 4 < shape[0]
                self.frame_shape = (shape[2], shape[0], shape[1]) if self.hwc else tuple(shape)
        else:
            self.frame_shape = tuple(spec["shape"]) or (1,)
        self.normalize = normalize and self.kind == "vector"  # images are scaled to [0, 1]
        self.clip = clip
        self.k = frame_stack
        self.rms = rms if rms is not None else (
            RunningMeanStd(self.frame_shape) if self.normalize else None)
        # vectors stack along their features, images along their channels
        self.shape = (self.frame_shape[0] * self.k, *self.frame_shape[1:])
        self.stack = torch.zeros(num_envs, self.k, *self.frame_shape)

    def raw_tensor(self, raw: np.ndarray) -> torch.Tensor:
        """Raw observations [N, ...] as float tensors of the frame shape (not normalised)."""
        if self.kind == "onehot":
            idx = torch.as_tensor(np.ascontiguousarray(raw, dtype=np.int64)) - self.spec["start"]
            return torch.nn.functional.one_hot(idx, self.spec["n"]).float()
        x = torch.as_tensor(np.ascontiguousarray(raw, dtype=np.float32))  # any strides
        if self.kind == "image":
            if len(self.spec["shape"]) == 2:
                x = x.unsqueeze(1)
            elif self.hwc:
                x = x.permute(0, 3, 1, 2)
            return x / 255.0
        return x.reshape(x.shape[0], *self.frame_shape)

    def update(self, raw: np.ndarray) -> None:
        """Fold a batch of raw observations into the running statistics (training only)."""
        if self.rms is not None:
            self.rms.update(self.raw_tensor(raw))

    def frames(self, raw: np.ndarray) -> torch.Tensor:
        x = self.raw_tensor(raw)
        if self.rms is not None:
            x = ((x.double() - self.rms.mean) / torch.sqrt(self.rms.var + 1e-8)).float()
            x = x.clamp(-self.clip, self.clip)
        return x

    def reset(self, raw: np.ndarray, rows: list[int] | None = None) -> torch.Tensor:
        """Start the stacks of ``rows`` (default: all) afresh from their first observation."""
        rows = list(range(len(self.stack))) if rows is None else rows
        f = self.frames(raw)
        self.stack[rows] = f.unsqueeze(1).expand(-1, self.k, *f.shape[1:])
        return self.current(rows)

    def push(self, raw: np.ndarray) -> torch.Tensor:
        """Append one observation per environment; returns the stacked inputs [N, *shape]."""
        f = self.frames(raw)
        self.stack = torch.cat([self.stack[:, 1:], f.unsqueeze(1)], dim=1)
        return self.current()

    def current(self, rows: list[int] | None = None) -> torch.Tensor:
        s = self.stack if rows is None else self.stack[rows]
        return s.reshape(s.shape[0], *self.shape).clone()


@dataclass
class Step:
    """What one vector step returns; rewards are the training rewards (scaled)."""

    obs: torch.Tensor                 # [N, *shape] next observations (after auto-reset)
    reward: torch.Tensor              # [N] float32
    terminated: torch.Tensor          # [N] bool: the episode reached a terminal state
    truncated: torch.Tensor           # [N] bool: cut by the time limit (bootstrap from it)
    final_obs: dict[int, torch.Tensor]  # env index → last observation of an ended episode
    finished: list[tuple[float, int]]   # (raw return, length) of each episode that ended

    @property
    def done(self) -> torch.Tensor:
        return self.terminated | self.truncated


def episode_seed(seed: int, stream: int, index: int, episode: int) -> int:
    """The reset seed of an episode: a pure function of its coordinates."""
    return int(np.random.SeedSequence([seed, stream, index, episode]).generate_state(1)[0])


class EnvPool:
    """``num_envs`` environments stepped together, auto-reset, with their episode records."""

    def __init__(self, cfg: EnvConfig, seed: int, gamma: float = 0.99) -> None:
        self.cfg = cfg
        self.seed = seed
        self.gamma = gamma
        self.envs = [make_env(cfg) for _ in range(cfg.num_envs)]
        self.obs_spec = space_spec(self.envs[0].observation_space, "observation")
        self.action_spec = space_spec(self.envs[0].action_space, "action")
        n = cfg.num_envs
        self.processor = ObsProcessor(self.obs_spec, n, normalize=cfg.normalize_obs,
                                      clip=cfg.clip_obs, frame_stack=cfg.frame_stack)
        self.ret_rms = RunningMeanStd(()) if cfg.normalize_reward else None
        self.disc_return = np.zeros(n)       # for reward normalisation
        self.episode = np.zeros(n, dtype=np.int64)  # episodes started per env
        self.ep_return = np.zeros(n)         # raw return so far
        self.ep_length = np.zeros(n, dtype=np.int64)
        self.actions: list[list[np.ndarray]] = [[] for _ in range(n)]  # since the last reset
        self.last_raw: list[np.ndarray] = []
        self.obs = torch.zeros(n, *self.processor.shape)
        self.finished: list[tuple[float, int]] = []  # drained by the runner after each step

    @property
    def num_envs(self) -> int:
        return len(self.envs)

    def _reset(self, i: int) -> np.ndarray:
        raw, _ = self.envs[i].reset(seed=episode_seed(self.seed, 0, i, int(self.episode[i])))
        self.actions[i] = []
        return np.asarray(raw)

    def start(self) -> torch.Tensor:
        raws = [self._reset(i) for i in range(self.num_envs)]
        self.last_raw = raws
        self.processor.update(np.stack(raws))
        self.obs = self.processor.reset(np.stack(raws))
        return self.obs

    def _env_action(self, a: np.ndarray) -> Any:
        if self.action_spec["type"] == "discrete":
            return int(a) + self.action_spec["start"]
        low, high = np.asarray(self.action_spec["low"]), np.asarray(self.action_spec["high"])
        return np.clip(np.asarray(a, dtype=np.float32), low, high).astype(np.float32)

    def step(self, actions: np.ndarray) -> Step:
        n = self.num_envs
        raws, rewards = [], np.zeros(n)
        term, trunc = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        for i, env in enumerate(self.envs):
            a = self._env_action(actions[i])
            raw, r, term[i], trunc[i], _ = env.step(a)
            self.actions[i].append(np.asarray(a))
            raws.append(np.asarray(raw))
            rewards[i] = float(r)
        self.ep_return += rewards
        self.ep_length += 1
        batch = np.stack(raws)
        self.processor.update(batch)
        obs = self.processor.push(batch)
        train_r = rewards * self.cfg.reward_scale
        if self.ret_rms is not None:
            self.disc_return = self.disc_return * self.gamma + train_r
            self.ret_rms.update(torch.as_tensor(self.disc_return))
            train_r = np.clip(train_r / np.sqrt(float(self.ret_rms.var) + 1e-8), -10.0, 10.0)
        done = term | trunc
        final_obs, finished, restart = {}, [], []
        for i in np.flatnonzero(done):
            final_obs[int(i)] = obs[i].clone()
            finished.append((float(self.ep_return[i]), int(self.ep_length[i])))
            self.finished.append(finished[-1])
            self.ep_return[i], self.ep_length[i], self.disc_return[i] = 0.0, 0, 0.0
            self.episode[i] += 1
            raws[i] = self._reset(int(i))
            restart.append(int(i))
        if restart:
            fresh = np.stack([raws[i] for i in restart])
            self.processor.update(fresh)
            obs[restart] = self.processor.reset(fresh, restart)
        self.last_raw = raws
        self.obs = obs
        return Step(obs, torch.as_tensor(train_r, dtype=torch.float32), torch.as_tensor(term),
                    torch.as_tensor(trunc), final_obs, finished)

    # -- checkpoints ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        copy = lambda a: torch.from_numpy(np.array(a))  # noqa: E731  (never a view)
        return {
            "episode": copy(self.episode), "ep_return": copy(self.ep_return),
            "ep_length": copy(self.ep_length), "disc_return": copy(self.disc_return),
            "actions": [copy(np.stack(a)) if a else torch.zeros(0) for a in self.actions],
            "last_raw": [copy(r) for r in self.last_raw],
            "stack": self.processor.stack.clone(), "obs": self.obs.clone(),
            "obs_rms": self.processor.rms.state_dict() if self.processor.rms else None,
            "ret_rms": self.ret_rms.state_dict() if self.ret_rms else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Bring every environment back to the saved point by seeded reset + action replay."""
        self.episode = state["episode"].numpy().copy()
        self.ep_return = state["ep_return"].numpy().copy()
        self.ep_length = state["ep_length"].numpy().copy()
        self.disc_return = state["disc_return"].numpy().copy()
        self.last_raw = []
        for i, env in enumerate(self.envs):
            raw = self._reset(i)
            for a in state["actions"][i].numpy():
                raw = np.asarray(env.step(a if a.ndim else a.item())[0])
                self.actions[i].append(np.asarray(a))
            saved = state["last_raw"][i].numpy()
            if raw.shape != saved.shape or not np.array_equal(raw, saved):
                raise CheckpointError(f"cannot resume exactly: environment {i} of "
                                      f"{self.cfg.id!r} did not return to its saved state "
                                      "after a seeded reset and replay of its actions (is it "
                                      "deterministic given its seed?)")
            self.last_raw.append(raw)
        self.processor.stack = state["stack"].clone()
        self.obs = state["obs"].clone()
        if self.processor.rms is not None:
            self.processor.rms.load_state_dict(state["obs_rms"])
        if self.ret_rms is not None:
            self.ret_rms.load_state_dict(state["ret_rms"])

    def close(self) -> None:
        for env in self.envs:
            env.close()
