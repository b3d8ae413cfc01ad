"""DQN: ε-greedy acting, replay, a target network, double DQN, dueling, n-step, Huber loss.

One :meth:`DQN.iteration` is one vector step of the environments; training rounds and
target updates happen when the env-step count crosses their intervals:

    a_t   = random with probability ε(t), else argmax_a Q(s_t, a)
    y     = R + discount · Q_target(s', argmax_a Q(s', a))        (double DQN)
          = R + discount · max_a Q_target(s', a)                   (plain DQN)
    loss  = mean_i w_i · huber(Q(s_i, a_i) - y_i)                  (w: prioritised replay)

``R`` and ``discount`` come from the replay buffer (n-step returns, see replay.py).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F

from layerwise.config import DQNConfig, RLConfig
from layerwise.errors import ConfigError
from layerwise.rl.env import EnvPool
from layerwise.rl.networks import QNetwork, agent_network
from layerwise.rl.replay import ReplayBuffer
from layerwise.training.guard import Guard
from layerwise.training.optim import build_optimizer, build_scheduler

MAX_NONFINITE = 10


class DQN:
    """The DQN agent; ``net`` is the online Q-network (the policy)."""

    def __init__(self, cfg: RLConfig, pool: EnvPool, device: torch.device) -> None:
        if not isinstance(cfg.agent, DQNConfig):  # the runner dispatches on agent.algo
            raise ConfigError(f"agent.algo {cfg.agent.algo!r} is not trained by this agent")
        self.cfg, self.a, self.device = cfg, cfg.agent, device
        net = agent_network(cfg, pool, device)
        if not isinstance(net, QNetwork):  # build_network dispatches on agent.algo too
            raise ConfigError(f"the network for agent.algo {cfg.agent.algo!r} is a "
                              f"{type(net).__name__}, not a QNetwork")
        self.net = net
        self.target = copy.deepcopy(self.net).requires_grad_(False)
        self.n_actions = pool.action_spec["n"]
        self.opt = build_optimizer(self.net.parameters(), cfg.train.optimizer)
        a, total = self.a, cfg.train.total_steps
        rounds = max(1, (total - a.learning_starts) // a.train_freq)
        self.sched = build_scheduler(self.opt, cfg.train.schedule, rounds * a.gradient_steps, 1)
        proc = pool.processor
        self.buffer = ReplayBuffer(a.buffer_size, proc.shape, image=proc.kind == "image",
                                   n_step=a.n_step, gamma=a.gamma, num_envs=pool.num_envs,
                                   prioritized=a.prioritized)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.steps_per_iteration = pool.num_envs
        self.updates = 0
        self.skipped = 0
        self.bad_in_row = 0
        self.guard = Guard(MAX_NONFINITE, "lower train.optimizer.lr or set env.reward_scale",
                           "DQN updates")

    def epsilon(self, step: int) -> float:
        a = self.a
        frac = min(1.0, step / max(1.0, a.exploration_fraction * self.cfg.train.total_steps))
        return a.epsilon_start + (a.epsilon_end - a.epsilon_start) * frac

    def iteration(self, pool: EnvPool, step: int) -> tuple[int, dict[str, float]]:
        """One vector step (+ the training it triggers); returns env steps and logs."""
        a, n = self.a, pool.num_envs
        obs = pool.obs
        eps = self.epsilon(step)
        explore = torch.rand(n, generator=self.gen) < eps
        random_actions = torch.randint(self.n_actions, (n,), generator=self.gen)
        if step < a.learning_starts:
            actions = random_actions
        else:
            with torch.no_grad():
                greedy = self.net(obs.to(self.device)).argmax(1).cpu()
            actions = torch.where(explore, random_actions, greedy)
        out = pool.step(actions.numpy())
        next_obs = out.obs
        if out.final_obs:
            next_obs = next_obs.clone()
            for i, final in out.final_obs.items():
                next_obs[i] = final
        self.buffer.add(obs, actions, out.reward, next_obs, out.terminated, out.done)
        new = step + n
        logs: dict[str, float] = {"epsilon": eps}
        if new > a.learning_starts and len(self.buffer) >= a.batch_size:
            rounds = new // a.train_freq - step // a.train_freq
            for _ in range(rounds * a.gradient_steps):
                logs.update(self.update(new))
            if new // a.target_update_interval > step // a.target_update_interval:
                self.sync_target()
        return n, logs

    def update(self, step: int) -> dict[str, float]:
        a = self.a
        beta = 1.0
        if a.prioritized is not None:
            b0 = a.prioritized.beta
            beta = b0 + (1.0 - b0) * min(1.0, step / self.cfg.train.total_steps)
        b = self.buffer.sample(a.batch_size, self.gen, beta)
        dev = self.device
        obs, next_obs = b["obs"].to(dev), b["next_obs"].to(dev)
        with torch.no_grad():
            next_q = self.target(next_obs)                       # [B, A]
            if a.double:
                best = self.net(next_obs).argmax(1, keepdim=True)
                next_v = next_q.gather(1, best).squeeze(1)
            else:
                next_v = next_q.max(1).values
            target = b["rewards"].to(dev) + b["discounts"].to(dev) * next_v
        q = self.net(obs).gather(1, b["actions"].to(dev).unsqueeze(1)).squeeze(1)  # [B]
        if a.loss == "huber":
            per = F.smooth_l1_loss(q, target, reduction="none")
        else:
            per = F.mse_loss(q, target, reduction="none")
        loss = (b["weights"].to(dev) * per).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        v = self.guard.measure_clipped(self.net.parameters(), loss, a.max_grad_norm)
        if not v.finite:
            return self._skip(v.loss)
        self.guard.ok(self)
        self.opt.step()
        self.sched.step()
        self.updates += 1
        self.buffer.update_priorities(b["indices"], (q - target).detach().abs().cpu())
        return {"loss": loss.item(), "q_mean": q.detach().mean().item(),
                "lr": self.opt.param_groups[0]["lr"], **({"beta": beta} if a.prioritized
                                                         else {})}

    def _skip(self, loss: float) -> dict[str, float]:
        self.opt.zero_grad(set_to_none=True)
        self.guard.skip(self, loss)
        return {}

    def sync_target(self) -> None:
        tau = self.a.tau
        with torch.no_grad():
            if tau >= 1.0:
                self.target.load_state_dict(self.net.state_dict())
                return
            for t, p in zip(self.target.parameters(), self.net.parameters()):
                t.mul_(1.0 - tau).add_(p, alpha=tau)
            for t, p in zip(self.target.buffers(), self.net.buffers()):
                t.copy_(p)

    # -- checkpoints -----------------------------------------------------------------------
    def state_dict(self, replay: bool = True) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "target": self.target.state_dict(),
                "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                "generator": self.gen.get_state(), "updates": self.updates,
                "skipped": self.skipped, "bad_in_row": self.bad_in_row,
                "buffer": self.buffer.state_dict() if replay else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.target.load_state_dict(state["target"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.gen.set_state(state["generator"])
        self.updates, self.skipped = int(state["updates"]), int(state["skipped"])
        self.bad_in_row = int(state["bad_in_row"])
        if state["buffer"] is not None:
            self.buffer.load_state_dict(state["buffer"])

    def summary(self) -> dict[str, Any]:
        return {"updates": self.updates, "skipped_updates": self.skipped,
                "replay_size": len(self.buffer)}
