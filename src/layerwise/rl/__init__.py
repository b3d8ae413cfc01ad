"""Reinforcement learning: Gymnasium environments, replay, DQN and PPO, policy artifacts.

    >>> import layerwise as lw                                        # doctest: +SKIP
    >>> run = lw.train("examples/cartpole_ppo.yaml", output="runs/cartpole")
    >>> policy = lw.load(run.model_dir)
    >>> policy.predict(observation)                                   # an action

A config with an ``env`` key is an RL run (:class:`layerwise.config.RLConfig`). The pieces:
``env`` (environments and observation processing), ``replay`` (the replay buffer),
``networks`` (Q and actor-critic networks over the ``models`` families), ``dqn`` and
``ppo`` (the agents), ``runner`` (the loop and run outputs), ``policy`` (the artifact),
``episodes`` (evaluation and rollouts), ``envs`` and ``bandit`` (small environments).
Needs the ``gymnasium`` package: ``pip install 'layerwise[rl]'``.
"""

from layerwise.rl.policy import Policy
from layerwise.rl.runner import train_agent

__all__ = ["Policy", "train_agent"]
