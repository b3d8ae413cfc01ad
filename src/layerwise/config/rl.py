"""Config models of a reinforcement-learning run: environment, agent, training."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field

from layerwise.config.base import CardConfig, _Strict
from layerwise.config.supervised import MLPConfig, ModelConfig, OptimizerConfig, ScheduleConfig

# ------------------------------------------------------------------ reinforcement learning
# An RL run names an environment and an agent where a supervised run names data, inputs
# and outputs; parse() returns an RLConfig when the raw config has an `env` key. The
# agents, environment wrappers and policy artifact live in layerwise/rl/.


class EnvConfig(_Strict):
    """A Gymnasium environment and the wrappers layerwise puts around it."""

    id: str = Field(min_length=1, description="any registered Gymnasium id, e.g. CartPole-v1 "
                    "or layerwise/Recommend-v0")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for "
                                   "gymnasium.make")
    num_envs: int = Field(1, gt=0, description="copies stepped together (vectorised)")
    max_episode_steps: int | None = Field(None, gt=0, description="time limit; default: the "
                                          "one registered with the id")
    normalize_obs: bool = Field(False, description="standardise vector observations with a "
                                "running mean and std (the statistics travel in the artifact)")
    clip_obs: float = Field(10.0, gt=0.0, description="clip normalised observations to "
                            "[-clip_obs, clip_obs]")
    frame_stack: int = Field(1, gt=0, description="feed the last N observations together")
    reward_scale: float = Field(1.0, gt=0.0, description="multiply training rewards by this "
                                "(reported returns stay raw)")
    normalize_reward: bool = Field(False, description="divide training rewards by the running "
                                   "std of the discounted return")


class PrioritizedReplayConfig(_Strict):
    """Proportional prioritised replay (Schaul et al. 2016)."""

    alpha: float = Field(0.6, ge=0.0, le=1.0, description="how much priorities count "
                         "(0: uniform)")
    beta: float = Field(0.4, ge=0.0, le=1.0, description="importance-sampling exponent at "
                        "the start; annealed linearly to 1")
    epsilon: float = Field(1e-6, gt=0.0, description="added to |TD error| so no transition "
                           "starves")


class DQNConfig(_Strict):
    """Deep Q-learning: target network, double DQN, dueling head, n-step, ε-greedy."""

    algo: Literal["dqn"]
    gamma: float = Field(0.99, ge=0.0, le=1.0, description="discount factor")
    buffer_size: int = Field(100_000, gt=0, description="replay capacity (transitions)")
    learning_starts: int = Field(1000, ge=0, description="env steps of uniformly random "
                                 "actions before learning starts")
    batch_size: int = Field(32, gt=0)
    train_freq: int = Field(4, gt=0, description="env steps between training rounds")
    gradient_steps: int = Field(1, gt=0, description="gradient steps per training round")
    target_update_interval: int = Field(1000, gt=0, description="env steps between target "
                                        "network updates")
    tau: float = Field(1.0, gt=0.0, le=1.0, description="target update: 1 copies, below 1 "
                       "mixes (Polyak)")
    double: bool = Field(True, description="double DQN: the online network picks the next "
                         "action, the target network values it")
    dueling: bool = Field(False, description="dueling head: V(s) + A(s, a) - mean A")
    n_step: int = Field(1, gt=0, description="n-step returns")
    loss: Literal["huber", "mse"] = "huber"
    max_grad_norm: float | None = Field(10.0, gt=0.0)
    epsilon_start: float = Field(1.0, ge=0.0, le=1.0)
    epsilon_end: float = Field(0.05, ge=0.0, le=1.0)
    exploration_fraction: float = Field(0.1, gt=0.0, le=1.0, description="share of "
                                        "train.total_steps over which ε falls linearly")
    prioritized: PrioritizedReplayConfig | None = Field(None, description="prioritised "
                                                        "replay; uniform when omitted")


class PPOConfig(_Strict):
    """Proximal policy optimisation: actor-critic, GAE(λ), clipped objective."""

    algo: Literal["ppo"]
    n_steps: int = Field(2048, gt=0, description="steps per environment in each rollout")
    batch_size: int = Field(64, gt=0, description="minibatch size")
    n_epochs: int = Field(10, gt=0, description="passes over each rollout")
    gamma: float = Field(0.99, ge=0.0, le=1.0)
    gae_lambda: float = Field(0.95, ge=0.0, le=1.0)
    clip_range: float = Field(0.2, gt=0.0)
    clip_decay: bool = Field(False, description="anneal clip_range linearly to 0 over training")
    clip_range_vf: float | None = Field(None, gt=0.0, description="clip the value update "
                                        "around the rollout's values (none: unclipped)")
    ent_coef: float = Field(0.0, ge=0.0, description="entropy bonus")
    vf_coef: float = Field(0.5, ge=0.0)
    max_grad_norm: float | None = Field(0.5, gt=0.0)
    normalize_advantage: bool = True
    target_kl: float | None = Field(None, gt=0.0, description="stop a rollout's epochs early "
                                    "when the approximate KL exceeds 1.5 × this")
    shared: bool = Field(False, description="one network body for policy and value (two "
                         "separate bodies when false)")
    log_std_init: float = Field(0.0, description="continuous actions: initial log std")
    ortho_init: bool = Field(True, description="orthogonal initialisation (gain √2 for the "
                             "body, 0.01 for the policy head, 1 for the value head)")


AgentConfig = Annotated[Union[DQNConfig, PPOConfig], Field(discriminator="algo")]


class RLTrainConfig(_Strict):
    """How long to train an agent, when to evaluate and checkpoint."""

    total_steps: int = Field(100_000, gt=0, description="environment steps, all envs together")
    optimizer: OptimizerConfig = Field(default_factory=lambda: OptimizerConfig(name="adam",
                                                                               lr=3e-4))
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig, description="learning "
                                     "rate schedule; it advances once per PPO rollout or DQN "
                                     "gradient step")
    eval_episodes: int = Field(20, gt=0, description="episodes per evaluation (deterministic "
                               "actions)")
    eval_every: int = Field(10_000, ge=0, description="env steps between evaluations (0: at "
                            "the end only)")
    eval_seed: int = Field(1000, ge=0, description="seeds the evaluation episodes, apart from "
                           "the training seed")
    keep_best: bool = Field(False, description="save the policy of the best periodic "
                            "evaluation when it beats the last policy (both are reported)")
    log_every: int = Field(2000, gt=0, description="env steps between history rows")
    checkpoint_every: int = Field(10_000, ge=0, description="env steps between checkpoints "
                                  "(0: at the end only)")
    checkpoint_replay: bool = Field(True, description="DQN: keep the replay buffer in "
                                    "checkpoints (needed for an exact resume)")
    progress: Literal["auto", "bar", "log", "quiet"] = "auto"
    threads: int | None = Field(None, gt=0, description="torch CPU threads (default: 1 for "
                                "small networks, else all cores)")
    device: Literal["auto", "cpu", "cuda"] = Field("cpu", description="small policies run "
                                                   "fastest on the CPU")


class RLConfig(_Strict):
    """A reinforcement-learning run: environment, agent, network and training."""

    name: str = "agent"
    seed: int = Field(0, ge=0)
    env: EnvConfig
    agent: AgentConfig
    network: ModelConfig = Field(
        default_factory=lambda: MLPConfig(family="mlp", hidden=[64, 64], activation="tanh"),
        description="the body of the policy / value / Q networks (mlp, or cnn for images)")
    train: RLTrainConfig = Field(default_factory=RLTrainConfig)
    card: CardConfig = Field(default_factory=CardConfig, description="the model card's "
                             "own words: description, owners, licence, intended use, "
                             "limitations (left out of the config hash)")


