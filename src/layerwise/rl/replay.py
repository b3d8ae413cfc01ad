"""The replay buffer: a ring of transitions as tensors, n-step returns, prioritised sampling.

Each stored transition is ``(obs, action, R, next_obs, discount)`` with

    R        = r_t + γ r_{t+1} + … + γ^{k-1} r_{t+k-1}     (k = n, or fewer at an episode end)
    discount = γ^k, or 0 when the episode terminated within those k steps

so the learning target is ``R + discount · Q_target(next_obs, ·)`` whatever n is, and a
time-limit truncation still bootstraps from the last observation. Images are stored as
uint8 (four times smaller than the float inputs they decode to, exactly).

Prioritised replay (proportional, Schaul et al. 2016) keeps ``priority^α`` in a sum tree;
every internal node is recomputed as the sum of its two children, never updated by
deltas, so a tree rebuilt from its leaves after a resume is bit-identical.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from layerwise.config import PrioritizedReplayConfig


class SumTree:
    """Non-negative values in a binary tree of sums: O(log n) update and prefix search."""

    def __init__(self, capacity: int) -> None:
        self.leaves = 1 << max(0, capacity - 1).bit_length()
        self.tree = np.zeros(2 * self.leaves)

    def update(self, idx: np.ndarray, values: np.ndarray) -> None:
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        if len(idx) == 1:  # the common case (one new transition): plain Python is faster
            p = int(idx[0]) + self.leaves
            self.tree[p] = float(np.asarray(values).reshape(-1)[0])
            while p > 1:
                p //= 2
                self.tree[p] = self.tree[2 * p] + self.tree[2 * p + 1]
            return
        pos = idx + self.leaves
        self.tree[pos] = values
        pos = np.unique(pos // 2)
        while len(pos):
            self.tree[pos] = self.tree[2 * pos] + self.tree[2 * pos + 1]
            pos = np.unique(pos[pos > 1] // 2)

    @property
    def total(self) -> float:
        return float(self.tree[1])

    def leaf(self, idx: np.ndarray) -> np.ndarray:
        return self.tree[np.asarray(idx) + self.leaves]

    def find(self, values: np.ndarray) -> np.ndarray:
        """For each value in [0, total), the leaf whose prefix-sum interval holds it."""
        pos = np.ones(len(values), dtype=np.int64)
        values = values.copy()
        while pos[0] < self.leaves:
            left = 2 * pos
            lv = self.tree[left]
            right = values >= lv
            values = np.where(right, values - lv, values)
            pos = np.where(right, left + 1, left)
        return pos - self.leaves


class ReplayBuffer:
    """Transitions of ``num_envs`` environments; see the module docstring."""

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], *, image: bool, n_step: int,
                 gamma: float, num_envs: int,
                 prioritized: PrioritizedReplayConfig | None = None) -> None:
        self.capacity, self.n_step, self.gamma, self.image = capacity, n_step, gamma, image
        dtype = torch.uint8 if image else torch.float32
        self.obs = torch.zeros(capacity, *obs_shape, dtype=dtype)
        self.next_obs = torch.zeros(capacity, *obs_shape, dtype=dtype)
        self.actions = torch.zeros(capacity, dtype=torch.long)
        self.rewards = torch.zeros(capacity)
        self.discounts = torch.zeros(capacity)
        self.pos, self.full = 0, False
        # per environment: the last < n (obs, action, reward) not yet stored
        self.pending: list[list[tuple[torch.Tensor, int, float]]] = [[] for _ in
                                                                     range(num_envs)]
        self.prio = prioritized
        self.tree = SumTree(capacity) if prioritized else None
        self.max_priority = 1.0

    def __len__(self) -> int:
        return self.capacity if self.full else self.pos

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        return (x * 255.0).round().to(torch.uint8) if self.image else x.clone()

    def _decode(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() / 255.0 if self.image else x

    def add(self, obs: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor,
            next_obs: torch.Tensor, terminated: torch.Tensor, done: torch.Tensor) -> None:
        """One vector step. ``next_obs`` holds the final observation where ``done``."""
        for i, queue in enumerate(self.pending):
            queue.append((self._encode(obs[i]), int(actions[i]), float(rewards[i])))
            nxt = self._encode(next_obs[i])
            if bool(done[i]):
                while queue:  # every pending step ends its return here
                    self._store(queue, nxt, bool(terminated[i]))
                    queue.pop(0)
            elif len(queue) == self.n_step:
                self._store(queue, nxt, False)
                queue.pop(0)

    def _store(self, queue: list[tuple[torch.Tensor, int, float]], next_obs: torch.Tensor,
               terminal: bool) -> None:
        ret = 0.0
        for k, (_, _, r) in enumerate(queue):
            ret += self.gamma ** k * r
        p = self.pos
        self.obs[p], self.actions[p] = queue[0][0], queue[0][1]
        self.rewards[p] = ret
        self.next_obs[p] = next_obs
        self.discounts[p] = 0.0 if terminal else self.gamma ** len(queue)
        if self.tree is not None and self.prio is not None:
            self.tree.update(np.array([p]), np.array([self.max_priority ** self.prio.alpha]))
        self.pos = (p + 1) % self.capacity
        self.full = self.full or self.pos == 0

    def sample(self, batch_size: int, generator: torch.Generator, beta: float = 1.0
               ) -> dict[str, torch.Tensor]:
        """A batch; ``weights`` are importance-sampling weights (ones when uniform)."""
        n = len(self)
        if self.tree is None:
            idx = torch.randint(n, (batch_size,), generator=generator)
            weights = torch.ones(batch_size)
        else:
            total = self.tree.total
            u = (torch.arange(batch_size, dtype=torch.float64) +
                 torch.rand(batch_size, generator=generator, dtype=torch.float64))
            found = np.minimum(self.tree.find(u.numpy() * total / batch_size), n - 1)
            probs = self.tree.leaf(found) / total
            w = (n * probs) ** (-beta)
            weights = torch.as_tensor(w / w.max(), dtype=torch.float32)
            idx = torch.as_tensor(found)
        return {"obs": self._decode(self.obs[idx]), "actions": self.actions[idx],
                "rewards": self.rewards[idx], "next_obs": self._decode(self.next_obs[idx]),
                "discounts": self.discounts[idx], "weights": weights, "indices": idx}

    def update_priorities(self, idx: torch.Tensor, td_abs: torch.Tensor) -> None:
        if self.tree is None or self.prio is None:
            return
        p = td_abs.double().numpy() + self.prio.epsilon
        self.tree.update(idx.numpy(), p ** self.prio.alpha)
        self.max_priority = max(self.max_priority, float(p.max()))

    # -- checkpoints ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        n = len(self)
        return {
            "obs": self.obs[:n].clone(), "next_obs": self.next_obs[:n].clone(),
            "actions": self.actions[:n].clone(), "rewards": self.rewards[:n].clone(),
            "discounts": self.discounts[:n].clone(), "pos": self.pos, "full": self.full,
            "pending": [{"obs": torch.stack([o for o, _, _ in q]) if q else torch.zeros(0),
                         "actions": torch.tensor([a for _, a, _ in q], dtype=torch.long),
                         "rewards": torch.tensor([r for _, _, r in q], dtype=torch.float64)}
                        for q in self.pending],
            "priorities": torch.from_numpy(self.tree.leaf(np.arange(n)).copy())
            if self.tree is not None else None,
            "max_priority": self.max_priority,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        n = state["obs"].shape[0]
        for name in ("obs", "next_obs", "actions", "rewards", "discounts"):
            getattr(self, name)[:n] = state[name]
        self.pos, self.full = int(state["pos"]), bool(state["full"])
        self.pending = [[(q["obs"][j], int(q["actions"][j]), float(q["rewards"][j]))
                         for j in range(len(q["actions"]))] for q in state["pending"]]
        if self.tree is not None and state["priorities"] is not None:
            self.tree.update(np.arange(n), state["priorities"].numpy())
        self.max_priority = float(state["max_priority"])
