"""Running a policy for whole episodes: evaluation, rollouts with rendering, GIF videos.

Evaluation episodes run side by side (one environment each, their observations batched
through the network) from seeds that are a pure function of (eval seed, episode number),
with deterministic actions, so an evaluation is reproducible and independent of the
training seed. Returns are the environment's raw rewards (no scaling or normalisation).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from layerwise.errors import ConfigError, MissingDependencyError
from layerwise.rl.env import episode_seed, make_env

if TYPE_CHECKING:
    from layerwise.rl.policy import Policy

EVAL_STREAM = 1  # training episodes use stream 0 of episode_seed


def run_episodes(policy: Policy, episodes: int, seed: int, *, deterministic: bool = True
                 ) -> dict[str, Any]:
    """``episodes`` episodes in parallel; their returns and lengths, and a summary."""
    if episodes <= 0:
        raise ConfigError(f"episodes must be a positive number; got {episodes}")
    envs = [make_env(policy.config.env) for _ in range(episodes)]
    try:
        raws = [np.asarray(env.reset(seed=episode_seed(seed, EVAL_STREAM, 0, e))[0])
                for e, env in enumerate(envs)]
        proc = policy.processor(episodes)
        obs = proc.reset(np.stack(raws))
        returns, lengths = np.zeros(episodes), np.zeros(episodes, dtype=np.int64)
        active = np.ones(episodes, dtype=bool)
        while active.any():
            actions = policy.act(obs, deterministic)
            for i in np.flatnonzero(active):
                raw, r, term, trunc, _ = envs[i].step(_env_action(actions[i]))
                raws[i] = np.asarray(raw)
                returns[i] += float(r)
                lengths[i] += 1
                if term or trunc:
                    active[i] = False
            obs = proc.push(np.stack(raws))
    finally:
        for env in envs:
            env.close()
    return summarise(returns, lengths, seed)


def summarise(returns: np.ndarray, lengths: np.ndarray, seed: int) -> dict[str, Any]:
    return {"episodes": len(returns), "seed": seed,
            "return_mean": float(returns.mean()), "return_std": float(returns.std()),
            "return_min": float(returns.min()), "return_max": float(returns.max()),
            "length_mean": float(lengths.mean()),
            "returns": [float(r) for r in returns], "lengths": [int(n) for n in lengths]}


def _env_action(a: np.ndarray) -> Any:
    return int(a) if a.ndim == 0 else a


def rollout(policy: Policy, episodes: int, seed: int, *, render: bool = False,
            deterministic: bool = True, every: int = 1) -> tuple[dict[str, Any],
                                                                  list[np.ndarray]]:
    """Episodes one after another; with ``render``, every ``every``-th frame as RGB arrays."""
    if episodes <= 0:
        raise ConfigError(f"--episodes must be a positive number; got {episodes}")
    if render:  # frames are drawn off-screen: pygame needs no display (nor complains of none)
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    env = make_env(policy.config.env, render_mode="rgb_array" if render else None)
    frames: list[np.ndarray] = []
    returns, lengths = np.zeros(episodes), np.zeros(episodes, dtype=np.int64)
    try:
        for e in range(episodes):
            raw, _ = env.reset(seed=episode_seed(seed, EVAL_STREAM, 0, e))
            proc = policy.processor(1)
            obs = proc.reset(np.asarray(raw)[None])
            done, t = False, 0
            while not done:
                if render and t % every == 0:
                    frames.append(_frame(env))
                action = policy.act(obs, deterministic)[0]
                raw, r, term, trunc, _ = env.step(_env_action(action))
                returns[e] += float(r)
                lengths[e] += 1
                done, t = bool(term or trunc), t + 1
                obs = proc.push(np.asarray(raw)[None])
            if render:
                frames.append(_frame(env))
    finally:
        env.close()
    return summarise(returns, lengths, seed), frames


def _frame(env: Any) -> np.ndarray:
    from gymnasium.error import DependencyNotInstalled

    try:
        frame = env.render()
    except DependencyNotInstalled as e:
        raise MissingDependencyError(f"rendering needs a package that is not installed "
                                     f"({e}); for the classic-control environments that is "
                                     "pygame: pip install 'layerwise[rl]'") from None
    if not isinstance(frame, np.ndarray) or frame.ndim != 3:
        raise ConfigError(f"environment {env.spec.id if env.spec else env!r} does not "
                          "render RGB frames (render_mode 'rgb_array'); no video possible")
    return frame


def write_gif(frames: list[np.ndarray], path: str | Path, fps: int = 30) -> Path:
    """Write frames as an animated GIF with Pillow (a core dependency)."""
    from PIL import Image

    out = Path(path)
    if out.suffix.lower() != ".gif":
        raise ConfigError(f"--video must name a .gif file (Pillow writes GIF); got {out.name!r}")
    if not frames:
        raise ConfigError("no frames to write")
    images = [Image.fromarray(np.ascontiguousarray(f).astype(np.uint8)) for f in frames]
    out.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(out, save_all=True, append_images=images[1:], loop=0,
                   duration=max(1, round(1000 / fps)), optimize=False)
    return out

