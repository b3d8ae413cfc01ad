"""Small RL configs on layerwise's own environments, shared by the tests/test_rl_*.py files."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

CORRIDOR_DQN: dict[str, Any] = {
    "name": "corridor_dqn", "seed": 0,
    "env": {"id": "layerwise/Corridor-v0"},
    "agent": {"algo": "dqn", "gamma": 0.9, "learning_starts": 100, "batch_size": 32,
              "train_freq": 1, "gradient_steps": 1, "target_update_interval": 50,
              "exploration_fraction": 0.5, "buffer_size": 2000},
    "network": {"family": "mlp", "hidden": [32], "activation": "relu"},
    "train": {"total_steps": 1200, "optimizer": {"name": "adam", "lr": 0.005},
              "eval_every": 0, "eval_episodes": 3, "log_every": 400, "checkpoint_every": 0,
              "progress": "quiet"},
}

CORRIDOR_PPO: dict[str, Any] = {
    "name": "corridor_ppo", "seed": 0,
    "env": {"id": "layerwise/Corridor-v0", "num_envs": 4},
    "agent": {"algo": "ppo", "n_steps": 16, "batch_size": 64, "n_epochs": 4, "gamma": 0.9},
    "network": {"family": "mlp", "hidden": [32], "activation": "tanh"},
    "train": {"total_steps": 1280, "optimizer": {"name": "adam", "lr": 0.003},
              "eval_every": 0, "eval_episodes": 3, "log_every": 320, "checkpoint_every": 0,
              "progress": "quiet"},
}


def config(base: dict[str, Any], **sections: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``base`` with some sections updated: ``config(X, agent={...})``."""
    cfg = copy.deepcopy(base)
    for key, update in sections.items():
        if isinstance(cfg.get(key), dict):
            cfg[key].update(update)
        else:
            cfg[key] = update
    return cfg


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "model" / "model.safetensors"))


def assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"tensor {k} differs"


def timeless(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """History rows without the wall-clock columns (the only ones allowed to differ)."""
    return [{k: v for k, v in row.items() if k not in ("time", "steps_per_second")}
            for row in history]
