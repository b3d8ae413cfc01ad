"""Q, policy and value networks: a body from the models registry plus small heads.

    obs [B, *shape] → body (mlp | cnn from layerwise.models) → features [B, F]
      DQN:  Q head          → q [B, n_actions]   (dueling: V [B, 1] + A - mean A)
      PPO:  policy head     → logits [B, n] | mean [B, d] (+ a learned log std [d])
            value head      → v [B]     (its own body unless ``shared``)

Gaussian actions are clipped to the action bounds when sampled, and a clipped action gets
the probability of the whole region beyond its bound, log Φ((low - μ)/σ) or
log Φ((μ - high)/σ) (clipped action policy gradient, Fujita & Maeda 2018). With the plain
density instead, the samples beyond a bound (all the same action for the environment)
feed noise into the mean, which then drifts out of the bounds and stays there.

Every network has ``act(obs, deterministic, generator)`` returning actions, so the policy
artifact treats them alike. Randomness comes only from the ``generator`` passed in.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.special import log_ndtr

from layerwise.config import DQNConfig, PPOConfig, RLConfig
from layerwise.errors import ConfigError
from layerwise.models import get_model

LOG_2PI = math.log(2 * math.pi)


class Body(nn.Module):
    """A registered model family as a feature extractor over observations."""

    def __init__(self, net_cfg: Any, obs_shape: tuple[int, ...], image: bool) -> None:
        super().__init__()
        family = net_cfg.family
        if family not in ("mlp", "cnn"):
            raise ConfigError(f"network.family must be 'mlp' or 'cnn' for reinforcement "
                              f"learning; got {family!r}")
        if family == "cnn" and not image:
            raise ConfigError(f"network.family 'cnn' needs image observations; this "
                              f"environment's observations are vectors of shape "
                              f"{list(obs_shape)}; use family 'mlp'")
        self.image = image
        desc: dict[str, Any] = {
            "numeric_dim": 0 if image else math.prod(obs_shape), "category_sizes": [],
            "category_dims": [], "images": {"obs": tuple(obs_shape)} if image else {},
            "texts": {}, "outputs": {}}
        self.net = get_model(family).from_config(net_cfg, desc)  # type: ignore[attr-defined]
        self.out_features: int = self.net.out_features

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        inputs = {"obs": obs} if self.image else {"numeric": obs.flatten(1)}
        return self.net(inputs)  # [B, F]


class QNetwork(nn.Module):
    """Action values for a discrete action space."""

    def __init__(self, net_cfg: Any, obs_shape: tuple[int, ...], image: bool, n_actions: int,
                 dueling: bool) -> None:
        super().__init__()
        self.body = Body(net_cfg, obs_shape, image)
        f = self.body.out_features
        self.dueling = dueling
        if dueling:
            self.value = nn.Linear(f, 1)
            self.advantage = nn.Linear(f, n_actions)
        else:
            self.q = nn.Linear(f, n_actions)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        h = self.body(obs)
        if not self.dueling:
            return self.q(h)  # [B, A]
        adv = self.advantage(h)
        return self.value(h) + adv - adv.mean(dim=1, keepdim=True)

    def act(self, obs: torch.Tensor, deterministic: bool = True,
            generator: torch.Generator | None = None) -> torch.Tensor:
        return self.forward(obs).argmax(dim=1)


class ActorCritic(nn.Module):
    """A policy (categorical or diagonal Gaussian) and a state-value function."""

    def __init__(self, net_cfg: Any, obs_shape: tuple[int, ...], image: bool,
                 action_spec: dict[str, Any], cfg: PPOConfig) -> None:
        super().__init__()
        self.discrete = action_spec["type"] == "discrete"
        self.actor = Body(net_cfg, obs_shape, image)
        self.critic = None if cfg.shared else Body(net_cfg, obs_shape, image)
        f = self.actor.out_features
        out = action_spec["n"] if self.discrete else math.prod(action_spec["shape"])
        self.pi = nn.Linear(f, out)
        self.v = nn.Linear(f, 1)
        if not self.discrete:
            self.log_std = nn.Parameter(torch.full((out,), float(cfg.log_std_init)))
            # bounds ("inf" strings in JSON parse as floats); buffers outside the state dict
            low, high = (torch.as_tensor(np.asarray(action_spec[k], dtype=np.float64),
                                         dtype=torch.float32).reshape(-1)
                         for k in ("low", "high"))
            self.register_buffer("low", low, persistent=False)
            self.register_buffer("high", high, persistent=False)
            self.bounded = bool(torch.isfinite(low).all() and torch.isfinite(high).all())
        if cfg.ortho_init:
            for body in (self.actor, self.critic):
                for m in (body.modules() if body is not None else ()):
                    if isinstance(m, nn.Linear | nn.Conv2d):
                        nn.init.orthogonal_(m.weight, gain=math.sqrt(2))
                        if m.bias is not None:
                            nn.init.zeros_(m.bias)
            for head, gain in ((self.pi, 0.01), (self.v, 1.0)):
                nn.init.orthogonal_(head.weight, gain=gain)
                nn.init.zeros_(head.bias)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Policy parameters (logits [B, n] or means [B, d]) and values [B]."""
        h = self.actor(obs)
        hv = h if self.critic is None else self.critic(obs)
        return self.pi(h), self.v(hv).squeeze(-1)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        body = self.actor if self.critic is None else self.critic
        return self.v(body(obs)).squeeze(-1)

    def log_prob_entropy(self, params: torch.Tensor, actions: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """log π(a|s) [B] and the entropy [B] of the policy given its parameters."""
        if self.discrete:
            logp = torch.log_softmax(params, dim=-1)
            chosen = logp.gather(1, actions.long().unsqueeze(1)).squeeze(1)
            return chosen, -(logp.exp() * logp).sum(-1)
        std = self.log_std.exp()
        z = (actions - params) / std
        logp = -0.5 * z.square() - self.log_std - 0.5 * LOG_2PI          # [B, d] density
        if self.bounded:  # a clipped action has the probability of everything beyond the bound
            low, high = self.low, self.high
            logp = torch.where(actions <= low, log_ndtr((low - params) / std), logp)
            logp = torch.where(actions >= high, log_ndtr((params - high) / std), logp)
        entropy = (0.5 + 0.5 * LOG_2PI + self.log_std).sum().expand(params.shape[0])
        return logp.sum(-1), entropy

    def sample(self, params: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if self.discrete:
            probs = torch.softmax(params, dim=-1)
            return torch.multinomial(probs, 1, generator=generator).squeeze(1)
        noise = torch.randn(params.shape, generator=generator)
        sample = params + self.log_std.exp() * noise
        return sample.clamp(self.low, self.high) if self.bounded else sample

    def act(self, obs: torch.Tensor, deterministic: bool = True,
            generator: torch.Generator | None = None) -> torch.Tensor:
        params = self.pi(self.actor(obs))
        if not deterministic:
            return self.sample(params, generator)
        return params.argmax(dim=1) if self.discrete else params


def build_network(cfg: RLConfig, obs_shape: tuple[int, ...], image: bool,
                  action_spec: dict[str, Any]) -> QNetwork | ActorCritic:
    """The network an agent trains, also rebuilt when a policy artifact is loaded."""
    agent = cfg.agent
    if isinstance(agent, DQNConfig):
        if action_spec["type"] != "discrete":
            raise ConfigError(f"agent.algo 'dqn' needs a discrete action space; "
                              f"{cfg.env.id!r} has continuous actions of shape "
                              f"{action_spec['shape']}: use agent.algo 'ppo'")
        return QNetwork(cfg.network, obs_shape, image, action_spec["n"], agent.dueling)
    return ActorCritic(cfg.network, obs_shape, image, action_spec, agent)


def agent_network(cfg: RLConfig, pool: Any, device: torch.device) -> QNetwork | ActorCritic:
    """The network of the agent ``cfg`` names, for ``pool``'s spaces, on ``device``."""
    proc = pool.processor
    net = build_network(cfg, proc.shape, proc.kind == "image", pool.action_spec)
    return net.to(device)
