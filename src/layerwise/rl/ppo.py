"""PPO: rollouts from vectorised environments, GAE(λ), the clipped objective.

One :meth:`PPO.iteration` collects ``n_steps`` from each of the ``num_envs`` environments,
then runs ``n_epochs`` passes of shuffled minibatches over it:

    δ_t   = r_t + γ V(s_{t+1}) (1 - done_t) - V(s_t)
    A_t   = δ_t + γλ (1 - done_t) A_{t+1}                    (GAE; returns R_t = A_t + V(s_t))
    ρ     = π(a|s) / π_old(a|s)
    L     = -mean min(ρ A, clip(ρ, 1±ε) A) + c_v · value loss - c_e · entropy

A time-limit truncation is not a terminal state: its reward gets γ V(final observation)
added, so the value is bootstrapped there (as Stable-Baselines3 does). The value loss is
the mean squared error, or with ``clip_range_vf`` the larger of the clipped and unclipped
errors (PPO2). Sampling draws only on the agent's own generator.
"""

from __future__ import annotations

from typing import Any

import torch

from layerwise.config import PPOConfig, RLConfig
from layerwise.errors import ConfigError
from layerwise.rl.env import EnvPool
from layerwise.rl.networks import ActorCritic, agent_network
from layerwise.training.guard import Guard
from layerwise.training.optim import build_optimizer, build_scheduler


class PPO:
    """The PPO agent; ``net`` is the actor-critic (its actor is the policy)."""

    def __init__(self, cfg: RLConfig, pool: EnvPool, device: torch.device) -> None:
        if not isinstance(cfg.agent, PPOConfig):  # the runner dispatches on agent.algo
            raise ConfigError(f"agent.algo {cfg.agent.algo!r} is not trained by this agent")
        self.cfg, self.a, self.device = cfg, cfg.agent, device
        net = agent_network(cfg, pool, device)
        if not isinstance(net, ActorCritic):  # build_network dispatches on agent.algo too
            raise ConfigError(f"the network for agent.algo {cfg.agent.algo!r} is a "
                              f"{type(net).__name__}, not a ActorCritic")
        self.net = net
        self.opt = build_optimizer(self.net.parameters(), cfg.train.optimizer)
        self.rollout_steps = self.a.n_steps * pool.num_envs
        # whole rollouts only, never past total_steps (at least one)
        self.n_rollouts = max(1, cfg.train.total_steps // self.rollout_steps)
        self.steps_per_iteration = self.rollout_steps
        self.sched = build_scheduler(self.opt, cfg.train.schedule, self.n_rollouts, 1)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.rollouts = 0
        self.updates = 0
        self.skipped = 0
        self.guard = Guard(None, "lower train.optimizer.lr or set env.normalize_obs / "
                           "env.normalize_reward", "PPO updates")

    def clip_range(self) -> float:
        """The clip range of the coming update (clip_decay: falls linearly towards 0)."""
        if not self.a.clip_decay:
            return self.a.clip_range
        return self.a.clip_range * max(0.0, 1.0 - self.rollouts / self.n_rollouts)

    @torch.no_grad()
    def collect(self, pool: EnvPool) -> dict[str, torch.Tensor]:
        """One rollout: [T, N] tensors of observations, actions, log-probs, rewards, values."""
        T, N, dev = self.a.n_steps, pool.num_envs, self.device
        net = self.net
        obs_buf = torch.zeros(T, N, *pool.obs.shape[1:])
        act_buf: list[torch.Tensor] = []
        logp = torch.zeros(T, N)
        rewards = torch.zeros(T, N)
        values = torch.zeros(T, N)
        dones = torch.zeros(T, N)
        obs = pool.obs
        for t in range(T):
            params, v = net(obs.to(dev))
            action = net.sample(params, self.gen)
            lp, _ = net.log_prob_entropy(params, action)
            out = pool.step(action.cpu().numpy())
            r = out.reward.clone()
            cut = [i for i in out.final_obs if bool(out.truncated[i]) and
                   not bool(out.terminated[i])]
            if cut:  # bootstrap a time-limit cut from the value of its last observation
                final = torch.stack([out.final_obs[i] for i in cut]).to(dev)
                r[cut] += self.a.gamma * net.value(final).cpu()
            obs_buf[t], logp[t], values[t] = obs, lp.cpu(), v.cpu()
            act_buf.append(action.cpu())
            rewards[t], dones[t] = r, out.done.float()
            obs = out.obs
        last_value = net.value(obs.to(dev)).cpu()
        adv = torch.zeros(T, N)
        gae = torch.zeros(N)
        g, lam = self.a.gamma, self.a.gae_lambda
        for t in reversed(range(T)):
            next_v = last_value if t == T - 1 else values[t + 1]
            live = 1.0 - dones[t]
            delta = rewards[t] + g * next_v * live - values[t]
            gae = delta + g * lam * live * gae
            adv[t] = gae
        return {"obs": obs_buf, "actions": torch.stack(act_buf), "logp": logp,
                "values": values, "advantages": adv, "returns": adv + values}

    def iteration(self, pool: EnvPool, step: int) -> tuple[int, dict[str, float]]:
        """Collect a rollout and learn from it; returns env steps and logs."""
        roll = self.collect(pool)
        n = self.rollout_steps
        flat = {k: v.reshape(n, *v.shape[2:]) for k, v in roll.items()}
        logs = self.learn(flat, self.clip_range())
        self.rollouts += 1
        return n, logs

    def learn(self, b: dict[str, torch.Tensor], clip: float) -> dict[str, float]:
        a, dev, net = self.a, self.device, self.net
        n = b["actions"].shape[0]
        lr = self.opt.param_groups[0]["lr"]
        sums = {"policy_loss": 0.0, "value_loss": 0.0, "entropy": 0.0, "approx_kl": 0.0,
                "clip_fraction": 0.0}
        count = 0
        stop = False
        for _ in range(a.n_epochs):
            perm = torch.randperm(n, generator=self.gen)
            for s in range(0, n, a.batch_size):
                idx = perm[s:s + a.batch_size]
                obs, actions = b["obs"][idx].to(dev), b["actions"][idx].to(dev)
                old_logp, old_v = b["logp"][idx].to(dev), b["values"][idx].to(dev)
                adv, ret = b["advantages"][idx].to(dev), b["returns"][idx].to(dev)
                params, v = net(obs)
                logp, entropy = net.log_prob_entropy(params, actions)
                if a.normalize_advantage and len(idx) > 1:
                    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                log_ratio = logp - old_logp
                ratio = log_ratio.exp()
                policy_loss = -torch.min(adv * ratio,
                                         adv * ratio.clamp(1 - clip, 1 + clip)).mean()
                if a.clip_range_vf is None:
                    value_loss = (ret - v).square().mean()
                else:
                    v_clip = old_v + (v - old_v).clamp(-a.clip_range_vf, a.clip_range_vf)
                    value_loss = torch.max((ret - v).square(), (ret - v_clip).square()).mean()
                loss = policy_loss + a.vf_coef * value_loss - a.ent_coef * entropy.mean()
                with torch.no_grad():
                    approx_kl = float(((ratio - 1) - log_ratio).mean())
                if a.target_kl is not None and approx_kl > 1.5 * a.target_kl:
                    stop = True
                    break
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                v = self.guard.measure_clipped(net.parameters(), loss, a.max_grad_norm)
                if not v.finite:
                    self._skip(v.loss)
                    continue
                self.opt.step()
                self.updates += 1
                count += 1
                sums["policy_loss"] += policy_loss.item()
                sums["value_loss"] += value_loss.item()
                sums["entropy"] += entropy.mean().item()
                sums["approx_kl"] += approx_kl
                sums["clip_fraction"] += float(((ratio - 1).abs() > clip).float().mean())
            if stop:
                break
        self.sched.step()
        logs = {k: v / max(1, count) for k, v in sums.items()}
        var = float(b["returns"].var())
        logs["explained_variance"] = (float("nan") if var == 0 else
                                      1.0 - float((b["returns"] - b["values"]).var()) / var)
        logs.update(lr=lr, clip_range=clip)
        if not net.discrete:
            logs["action_std"] = float(net.log_std.detach().exp().mean())
        return logs

    def _skip(self, loss: float) -> None:
        self.opt.zero_grad(set_to_none=True)
        # many minibatch updates per rollout: give up when most of them fail over the
        # run, not after a few in a row
        self.guard.skip(self, loss, counts=False, total_limit=10 * max(1, self.rollouts))

    # -- checkpoints ---------------------------------------------------------------------
    def state_dict(self, replay: bool = True) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(), "generator": self.gen.get_state(),
                "rollouts": self.rollouts, "updates": self.updates, "skipped": self.skipped}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.gen.set_state(state["generator"])
        self.rollouts, self.updates = int(state["rollouts"]), int(state["updates"])
        self.skipped = int(state["skipped"])

    def summary(self) -> dict[str, Any]:
        return {"rollouts": self.rollouts, "updates": self.updates,
                "skipped_updates": self.skipped}
