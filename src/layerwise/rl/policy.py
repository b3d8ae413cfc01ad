"""The policy artifact: what an agent leaves behind, and what ``lw.load`` returns for it.

    model/
      layerwise.json      "kind": "policy", algo, network family, the run's config, the
                          observation and action spaces, observation statistics, metrics,
                          lineage
      model.safetensors   the network's weights (DQN: the Q-network; PPO: actor and critic)
      card.md             the model card

    >>> policy = lw.load("runs/cartpole_ppo/model")             # doctest: +SKIP
    >>> policy.predict(env.reset()[0])                          # doctest: +SKIP
    1

``predict`` takes raw observations as the environment returns them (one, or a batch) and
applies the same processing as training (one-hot, image scaling, normalisation with the
frozen statistics, frame stacking), then returns actions in the environment's format.
Loading refuses pickles exactly as the supervised artifact does (the same safetensors
check), and refuses algorithms and families that are not registered.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from layerwise import artifact as art
from layerwise.config import RLConfig, parse
from layerwise.errors import ArtifactError, ConfigError, DataError
from layerwise.files import check_finite, dumps_json, load_safetensors, save_safetensors, write_text
from layerwise.models import model_names
from layerwise.rl.env import ObsProcessor, RunningMeanStd
from layerwise.rl.networks import ActorCritic, QNetwork, build_network

KIND = "policy"
ALGOS = ("dqn", "ppo")


class Policy:
    """A trained policy: raw observation → action. See the module docstring."""

    def __init__(self, net: QNetwork | ActorCritic, config: RLConfig,
                 obs_spec: dict[str, Any], action_spec: dict[str, Any],
                 rms: RunningMeanStd | None, meta: dict[str, Any] | None = None,
                 path: Path | None = None) -> None:
        self.net = net
        self.config = config
        self.obs_spec = obs_spec
        self.action_spec = action_spec
        self.rms = rms  # frozen: a policy never updates the statistics
        self.meta = meta or {}
        self.path = path
        self._stream: ObsProcessor | None = None  # frame stacks between predict calls

    @property
    def algo(self) -> str:
        return self.config.agent.algo

    def processor(self, num_envs: int) -> ObsProcessor:
        env = self.config.env
        return ObsProcessor(self.obs_spec, num_envs, normalize=env.normalize_obs,
                            clip=env.clip_obs, frame_stack=env.frame_stack, rms=self.rms)

    @torch.inference_mode()
    def act(self, obs: torch.Tensor, deterministic: bool = True,
            generator: torch.Generator | None = None) -> np.ndarray:
        """Processed observations [B, *shape] → actions in the environment's format [B, ...]."""
        was = self.net.training
        self.net.eval()
        dev = next(self.net.parameters()).device
        try:
            out = self.net.act(obs.to(dev), deterministic, generator).cpu()
        finally:
            self.net.train(was)
        spec = self.action_spec
        if spec["type"] == "discrete":
            return out.numpy().astype(np.int64) + spec["start"]
        low, high = _bounds(spec)
        acts = out.reshape(out.shape[0], *spec["shape"]).numpy().astype(np.float32)
        return np.clip(acts, low, high).astype(np.float32)

    def reset(self) -> None:
        """Forget the stacked frames of earlier ``predict`` calls (start of an episode)."""
        self._stream = None

    def predict(self, observation: Any, deterministic: bool = True) -> Any:
        """The action for one raw observation, or an array of actions for a batch of them.

        A Discrete action comes back as an ``int``, a Box action as a float32 array. With
        frame stacking, consecutive calls form an episode; call :meth:`reset` between
        episodes.
        """
        raw, single = self._as_batch(observation)
        proc = self._stream
        if proc is None or proc.stack.shape[0] != raw.shape[0]:
            proc = self._stream = self.processor(raw.shape[0])
            obs = proc.reset(raw)
        else:
            obs = proc.push(raw)
        actions = self.act(obs, deterministic)
        if single:
            return int(actions[0]) if self.action_spec["type"] == "discrete" else actions[0]
        return actions

    def _as_batch(self, observation: Any) -> tuple[np.ndarray, bool]:
        spec = self.obs_spec
        try:
            raw = np.asarray(observation, dtype=np.int64 if spec["type"] == "discrete"
                             else np.float32)
        except (TypeError, ValueError) as e:
            raise DataError(f"observation is not numeric: {e}") from None
        shape = () if spec["type"] == "discrete" else tuple(spec["shape"])
        if raw.shape == shape:
            return raw[None], True
        if raw.shape[1:] == shape and raw.shape[0] > 0:
            return raw, False
        raise DataError(f"observation has shape {list(raw.shape)}; this policy expects "
                        f"{list(shape)} (one observation) or [batch, {', '.join(map(str, shape))}]"
                        f" (environment {self.config.env.id})")

    def evaluate(self, episodes: int | None = None, seed: int | None = None
                 ) -> dict[str, Any]:
        """Run deterministic episodes; returns the mean, std, min and max return."""
        from layerwise.rl.episodes import run_episodes

        t = self.config.train
        return run_episodes(self, episodes or t.eval_episodes,
                            t.eval_seed if seed is None else seed)

    # -- the artifact --------------------------------------------------------------------
    def save(self, path: str | Path, *, metrics: dict[str, Any] | None = None,
             lineage: dict[str, Any] | None = None, card: str | None = None,
             extra: dict[str, Any] | None = None) -> Path:
        """Write the policy directory; each file is replaced atomically."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        meta = {
            "format_version": art.FORMAT_VERSION, "library": "layerwise", "kind": KIND,
            "algo": self.algo, "family": self.config.network.family,
            "env_id": self.config.env.id,
            "config": self.config.model_dump(mode="json"),
            "observation_space": self.obs_spec, "action_space": _jsonable(self.action_spec),
            "obs_normalizer": None if self.rms is None else {
                "mean": self.rms.mean.tolist(), "var": self.rms.var.tolist(),
                "count": self.rms.count},
            "metrics": metrics or {}, "lineage": lineage or {}, **(extra or {}),
        }
        save_safetensors(out / art.WEIGHTS, self.net.state_dict())
        _write_text(out / art.META, dumps_json(meta, indent=2))
        if card is not None:
            _write_text(out / art.CARD, card)
        return out

    @classmethod
    def load(cls, path: str | Path) -> Policy:
        """Load a policy directory safely (format version, safetensors, registered names)."""
        p = Path(path)
        meta = art.read_header(p)
        where = p / art.META
        if meta.get("kind") != KIND:
            raise ArtifactError(f"{where}: not a policy (kind {meta.get('kind')!r}); load it "
                                "with layerwise.load")
        if meta.get("algo") not in ALGOS:
            raise ArtifactError(f"{where}: algorithm {meta.get('algo')!r} is not known "
                                f"(known: {', '.join(ALGOS)}); refusing to load")
        if meta.get("family") not in model_names():
            raise ArtifactError(f"{where}: network family {meta.get('family')!r} is not "
                                f"registered (known: {', '.join(model_names())}); refusing "
                                "to load")
        for key in ("config", "observation_space", "action_space"):
            if not isinstance(meta.get(key), dict):
                raise ArtifactError(f"{where}: {key!r} must be a JSON object; got "
                                    f"{type(meta.get(key)).__name__}")
        art.check_weights_file(p / art.WEIGHTS)
        try:
            config = parse(meta["config"])
        except ConfigError as e:
            raise ArtifactError(f"{where}: the stored config is invalid: {e}") from None
        if not isinstance(config, RLConfig) or config.agent.algo != meta["algo"]:
            raise ArtifactError(f"{where}: the stored config is not a {meta['algo']} run")
        obs_spec, action_spec = meta["observation_space"], meta["action_space"]
        try:
            proc = ObsProcessor(obs_spec, 1, normalize=config.env.normalize_obs,
                                frame_stack=config.env.frame_stack)
            net = build_network(config, proc.shape, proc.kind == "image", action_spec)
            rms = _rms(meta.get("obs_normalizer"), proc)
        except (KeyError, TypeError, ValueError) as e:
            raise ArtifactError(f"{where}: the stored spaces or statistics are invalid: "
                                f"{e}") from None
        tensors = load_safetensors(p / art.WEIGHTS)
        check_finite(p / art.WEIGHTS, tensors, [n for n, _ in net.named_parameters()])
        expected = net.state_dict()
        missing, unexpected = set(expected) - set(tensors), set(tensors) - set(expected)
        if missing or unexpected:
            raise ArtifactError(f"{p / art.WEIGHTS}: weights do not match the network "
                                f"(missing {sorted(missing)[:5]}, unexpected "
                                f"{sorted(unexpected)[:5]})")
        try:
            net.load_state_dict(tensors)
        except RuntimeError as e:
            raise ArtifactError(f"{p / art.WEIGHTS}: weights do not fit the network: "
                                f"{e}") from None
        net.eval()
        return cls(net, config, obs_spec, action_spec, rms, meta, p)

    def __repr__(self) -> str:
        return (f"Policy(algo={self.algo!r}, env={self.config.env.id!r}, "
                f"family={self.config.network.family!r})")


def _rms(state: dict[str, Any] | None, proc: ObsProcessor) -> RunningMeanStd | None:
    if not proc.normalize:
        return None
    if not isinstance(state, dict):
        raise ValueError("obs_normalizer is missing although env.normalize_obs is true")
    rms = RunningMeanStd(proc.frame_shape)
    rms.load_state_dict({"mean": torch.tensor(state["mean"], dtype=torch.float64),
                         "var": torch.tensor(state["var"], dtype=torch.float64),
                         "count": float(state["count"])})
    if tuple(rms.mean.shape) != proc.frame_shape:
        raise ValueError(f"obs_normalizer has shape {list(rms.mean.shape)}; expected "
                         f"{list(proc.frame_shape)}")
    return rms


def _bounds(spec: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    return (np.asarray(spec["low"], dtype=np.float64),  # "inf" strings parse as floats
            np.asarray(spec["high"], dtype=np.float64))


def _jsonable(spec: dict[str, Any]) -> dict[str, Any]:
    """Infinite bounds as the strings "inf" / "-inf" (JSON has no infinity)."""
    def fix(v: Any) -> Any:
        if isinstance(v, list):
            return [fix(x) for x in v]
        if isinstance(v, float) and math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    return {k: fix(v) if k in ("low", "high") else v for k, v in spec.items()}


_write_text = write_text
