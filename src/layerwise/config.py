"""The whole configuration as pydantic models: validated once, unknown keys are errors.

A config is YAML, a dict, or a :class:`Config` object; all three go through :func:`parse`::

    >>> cfg = parse({"data": {"dataset": "wine"},
    ...              "inputs": [{"name": "alcohol", "type": "numeric"}],
    ...              "outputs": [{"name": "target", "type": "category"}],
    ...              "model": {"family": "mlp", "hidden": [32]}})
    >>> cfg.train.optimizer.name
    'adamw'

This module is a leaf: it imports nothing else of layerwise but ``errors``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from layerwise.errors import ConfigError

__all__ = [
    "AugmentConfig",
    "BinaryInput",
    "BinaryOutput",
    "CNNConfig",
    "CategoryInput",
    "CategoryOutput",
    "Config",
    "ConvBlock",
    "DQNConfig",
    "DataConfig",
    "EarlyStoppingConfig",
    "EnvConfig",
    "ImageInput",
    "MLPConfig",
    "NextTokenOutput",
    "NumericInput",
    "NumericOutput",
    "OptimizerConfig",
    "PPOConfig",
    "PrioritizedReplayConfig",
    "RLConfig",
    "RLTrainConfig",
    "RNNConfig",
    "ScheduleConfig",
    "SplitConfig",
    "TextInput",
    "TrainConfig",
    "TransformerConfig",
    "apply_overrides",
    "config_hash",
    "json_schema",
    "load_yaml",
    "parse",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ---------------------------------------------------------------------------- data


class SplitConfig(_Strict):
    """How rows are divided into train / validation / test."""

    validation: float = Field(0.1, ge=0.0, lt=1.0, description="share held out for validation")
    test: float = Field(0.2, ge=0.0, lt=1.0, description="share held out for test (ignored "
                        "when the source has its own test part or test_path is given)")
    stratify: bool = Field(True, description="keep class shares equal across splits")
    column: str | None = Field(None, description="a column holding train/validation/test per row")
    seed: int | None = Field(None, description="split seed; defaults to the run seed")

    @model_validator(mode="after")
    def _sum_below_one(self) -> SplitConfig:
        if self.validation + self.test >= 1.0:
            raise ValueError(f"split.validation + split.test must be below 1; got "
                             f"{self.validation} + {self.test}")
        return self


class DataConfig(_Strict):
    """Where the rows come from. Give exactly one of ``dataset`` and ``path``."""

    dataset: str | None = Field(None, description="a catalogue name (see `layerwise datasets`)")
    path: str | None = Field(None, description="a CSV, Parquet, JSON Lines, .npz file or an "
                             "image folder (one sub-folder per class)")
    format: Literal["csv", "parquet", "jsonl", "npz", "images"] | None = Field(
        None, description="file format; inferred from the extension when omitted")
    validation_path: str | None = None
    test_path: str | None = None
    split: SplitConfig = Field(default_factory=SplitConfig)
    delimiter: str = ","
    skip_bad_rows: bool = Field(False, description="skip malformed rows (counted) instead of "
                                "stopping at the first one")
    max_bad_rows: int = Field(100, ge=0, description="with skip_bad_rows, stop once more than "
                              "this many rows were skipped")
    limit: int | None = Field(None, gt=0, description="use only the first N rows of the source")

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if (self.dataset is None) == (self.path is None):
            raise ValueError("data needs exactly one of 'dataset' (a catalogue name) or "
                             f"'path' (a file); got dataset={self.dataset!r}, path={self.path!r}")
        return self


# ---------------------------------------------------------------------------- features


class AugmentConfig(_Strict):
    """Random image augmentation, applied to training batches only."""

    shift: int = Field(0, ge=0, description="random translation of up to N pixels")
    flip: bool = Field(False, description="random horizontal flip (not for digits or text)")
    noise: float = Field(0.0, ge=0.0, description="std of added Gaussian noise (normalised units)")


class _Feature(_Strict):
    name: str = Field(min_length=1, description="column name in the data")


class NumericInput(_Feature):
    type: Literal["numeric"]
    normalize: Literal["standard", "minmax", "none"] = "standard"
    missing: Literal["error", "mean", "median", "constant"] = Field(
        "error", description="what to do with empty cells")
    fill_value: float = 0.0


class BinaryInput(_Feature):
    type: Literal["binary"]
    missing: Literal["error", "constant"] = "error"
    fill_value: bool = False


class CategoryInput(_Feature):
    type: Literal["category"]
    max_categories: int = Field(1000, gt=0, description="keep the most frequent N values")
    min_count: int = Field(1, ge=1, description="rarer values map to the unknown index")
    embedding_dim: int | None = Field(None, gt=0, description="default: min(32, (n+1)//2)")
    missing: Literal["error", "constant"] = "error"
    fill_value: str = "<missing>"


class ImageInput(_Feature):
    type: Literal["image"]
    size: tuple[int, int] | None = Field(None, description="[height, width]; default: as "
                                         "found in the training data")
    channels: Literal[1, 3] | None = Field(None, description="1 (grey) or 3 (RGB); default: "
                                            "as found in the training data")
    augment: AugmentConfig = Field(default_factory=AugmentConfig)


class TextInput(_Feature):
    """Free text, tokenized by a tokenizer fitted on the training split (see data/text.py)."""

    type: Literal["text"]
    tokenizer: Literal["char", "word", "bpe"] = Field(
        "word", description="char: characters; word: words and punctuation; bpe: byte-level "
        "byte-pair encoding (Hugging Face tokenizers)")
    max_length: int = Field(128, gt=0, description="tokens kept per text; longer texts are "
                            "truncated (the start is kept)")
    vocab_size: int = Field(20000, ge=4, description="largest vocabulary, <pad> and <unk> "
                            "included (bpe: the target size)")
    min_frequency: int = Field(1, ge=1, description="rarer tokens map to <unk>")
    lowercase: bool = True
    missing: Literal["error", "constant"] = Field(
        "error", description="a missing cell (None/NaN); an empty string is an empty text")
    fill_value: str = ""


InputFeature = Annotated[Union[NumericInput, BinaryInput, CategoryInput, ImageInput, TextInput],
                         Field(discriminator="type")]


class CategoryOutput(_Feature):
    type: Literal["category"]
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    class_weights: Literal["balanced"] | dict[str, float] | None = None
    loss_weight: float = Field(1.0, gt=0.0)


class BinaryOutput(_Feature):
    type: Literal["binary"]
    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    pos_weight: float | None = Field(None, gt=0.0)
    loss_weight: float = Field(1.0, gt=0.0)


class NumericOutput(_Feature):
    type: Literal["numeric"]
    loss: Literal["mse", "mae", "huber"] = "mse"
    normalize: bool = Field(True, description="train on standardised targets")
    loss_weight: float = Field(1.0, gt=0.0)


class NextTokenOutput(_Feature):
    """Language modelling: predict each next token of a text input (see docs/decisions.md)."""

    type: Literal["next_token"]
    input: str = Field(min_length=1, description="the text input whose tokens are predicted")
    loss_weight: float = Field(1.0, gt=0.0)


OutputFeature = Annotated[Union[CategoryOutput, BinaryOutput, NumericOutput, NextTokenOutput],
                          Field(discriminator="type")]

# ---------------------------------------------------------------------------- models

Activation = Literal["relu", "gelu", "tanh", "sigmoid", "silu", "leaky_relu"]


class MLPConfig(_Strict):
    """A multi-layer perceptron over all tabular inputs (images are flattened)."""

    family: Literal["mlp"]
    hidden: list[int] = Field(default_factory=lambda: [128, 64], description="hidden widths")
    activation: Activation = "relu"
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    norm: Literal["none", "batch", "layer"] = "none"


class ConvBlock(_Strict):
    """One stage of a CNN: ``layers`` convolutions, then optional pooling and dropout."""

    filters: int = Field(gt=0)
    kernel: int = Field(3, gt=0)
    stride: int = Field(1, gt=0)
    padding: int | Literal["same"] = "same"
    layers: int = Field(1, gt=0, description="convolutions in this block")
    pool: Literal["max", "avg"] | None = None
    pool_size: int = Field(2, gt=0)
    pool_before_norm: bool = Field(False, description="pool straight after the last "
                                   "convolution, before batch norm and activation: the same "
                                   "model up to ordering (max-pooling commutes with ReLU), "
                                   "with 4x less normalisation work")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)


class CNNConfig(_Strict):
    """A convolutional network over one image input; tabular inputs join the dense head."""

    family: Literal["cnn"]
    blocks: list[ConvBlock] = Field(default_factory=lambda: [
        ConvBlock(filters=32, pool="max"), ConvBlock(filters=64, pool="max")])
    activation: Activation = "relu"
    batch_norm: bool = True
    residual: bool = Field(False, description="add a skip connection around each block")
    global_pool: Literal["avg", "max", "flatten"] = "avg"
    dense: list[int] = Field(default_factory=lambda: [128])
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout in the dense head")

    @model_validator(mode="after")
    def _pool_order(self) -> CNNConfig:
        if self.residual and any(b.pool_before_norm for b in self.blocks):
            raise ValueError("blocks[].pool_before_norm cannot be combined with residual: true")
        return self


class RNNConfig(_Strict):
    """Recurrent network over text inputs (see models/rnn.py); tabular inputs join the head."""

    family: Literal["rnn"]
    cell: Literal["lstm", "gru", "rnn"] = Field("lstm", description="rnn: vanilla tanh RNN")
    embedding_dim: int = Field(128, gt=0)
    hidden: int = Field(128, gt=0, description="hidden units per direction")
    layers: int = Field(1, gt=0, description="stacked recurrent layers")
    bidirectional: bool = False
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="on embeddings, between stacked "
                           "layers and in the dense head")
    pooling: Literal["last", "mean", "max", "attention"] = Field(
        "last", description="how the sequence of states becomes one vector")
    dense: list[int] = Field(default_factory=list, description="dense layers after pooling")
    activation: Activation = "relu"


class TransformerConfig(_Strict):
    """Transformer encoder over text inputs (see models/transformer.py)."""

    family: Literal["transformer"]
    d_model: int = Field(128, gt=0, description="width of tokens (a multiple of heads)")
    heads: int = Field(4, gt=0)
    layers: int = Field(2, gt=0)
    mlp_ratio: int = Field(4, gt=0, description="hidden width of each block's MLP / d_model")
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    positions: Literal["learned", "sinusoidal", "rotary"] = "learned"
    causal: bool = Field(False, description="decoder-only: a token sees itself and earlier "
                         "tokens only (needed by next_token outputs)")
    pooling: Literal["mean", "max", "cls"] = Field(
        "mean", description="cls: a learned token prepended to every text")
    dense: list[int] = Field(default_factory=list, description="dense layers after pooling")
    activation: Activation = "gelu"

    @model_validator(mode="after")
    def _heads_divide(self) -> TransformerConfig:
        if self.d_model % self.heads:
            raise ValueError(f"d_model must be a multiple of heads; got d_model={self.d_model}"
                             f", heads={self.heads}")
        if self.positions == "rotary" and (self.d_model // self.heads) % 2:
            raise ValueError("rotary positions need an even head width (d_model / heads); got "
                             f"{self.d_model // self.heads}")
        return self


ModelConfig = Annotated[Union[MLPConfig, CNNConfig, RNNConfig, TransformerConfig],
                        Field(discriminator="family")]

# ---------------------------------------------------------------------------- training


class OptimizerConfig(_Strict):
    name: Literal["sgd", "adam", "adamw"] = "adamw"
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD only")
    nesterov: bool = Field(False, description="SGD only")
    betas: tuple[float, float] = (0.9, 0.999)


class ScheduleConfig(_Strict):
    name: Literal["constant", "step", "cosine", "onecycle"] = "constant"
    warmup_steps: int = Field(0, ge=0, description="linear warm-up from 0 (all schedules "
                              "but onecycle, which warms up on its own)")
    step_size: int = Field(10, gt=0, description="step: epochs between decays")
    gamma: float = Field(0.1, gt=0.0, le=1.0, description="step: decay factor")
    min_lr: float = Field(0.0, ge=0.0, description="cosine: final learning rate")
    pct_start: float = Field(0.25, gt=0.0, lt=1.0, description="onecycle: share warming up")


class EarlyStoppingConfig(_Strict):
    monitor: str = Field("val_loss", description="any validation metric, e.g. val_accuracy")
    mode: Literal["auto", "min", "max"] = "auto"
    patience: int = Field(5, ge=1)
    min_delta: float = Field(0.0, ge=0.0)
    restore_best: bool = True


class TrainConfig(_Strict):
    """How to train: the Trainer's whole configuration."""

    epochs: int = Field(10, gt=0)
    batch_size: int = Field(64, gt=0)
    seed: int = 0
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    grad_clip: float | None = Field(None, gt=0.0, description="clip the global gradient norm")
    accumulate: int = Field(1, gt=0, description="micro-batches per optimizer step")
    early_stopping: EarlyStoppingConfig | None = None
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 autocast where the hardware runs it fast (AMX/CUDA)")
    memory_format: Literal["auto", "channels_last", "contiguous"] = "auto"
    batching: Literal["auto", "memory", "loader"] = Field(
        "auto", description="memory: index-slices of preloaded tensors; loader: DataLoader")
    checkpoint_every: int = Field(500, ge=0, description="steps between checkpoints (0: epoch "
                                  "ends only)")
    max_nonfinite_steps: int = Field(10, gt=0, description="consecutive skipped steps "
                                     "before training aborts")
    telemetry_every: int = Field(25, gt=0, description="steps between per-layer gradient norms")
    progress: Literal["auto", "bar", "log", "quiet"] = "auto"
    threads: int | None = Field(None, gt=0, description="torch CPU threads (default: all cores)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda if present")


# ---------------------------------------------------------------------------- top level


class Config(_Strict):
    """A whole run: data, features, model and training."""

    name: str = "run"
    seed: int = 0
    data: DataConfig
    inputs: list[InputFeature] = Field(min_length=1)
    outputs: list[OutputFeature] = Field(min_length=1)
    model: ModelConfig
    train: TrainConfig = Field(default_factory=TrainConfig)

    @model_validator(mode="after")
    def _check(self) -> Config:
        names = [f.name for f in self.inputs] + [f.name for f in self.outputs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"feature names must be unique across inputs and outputs; "
                             f"repeated: {dup}")
        texts = {f.name for f in self.inputs if f.type == "text"}
        for o in self.outputs:
            if o.type != "next_token":
                continue
            if o.input not in texts:
                raise ValueError(f"outputs {o.name!r}: input must name a text input "
                                 f"({sorted(texts)}); got {o.input!r}")
            if len(self.outputs) > 1 or len(self.inputs) > 1 or \
                    self.model.family != "transformer" or not self.model.causal:
                raise ValueError(f"outputs {o.name!r}: a next_token output is a language "
                                 "model: one text input, this one output, and model.family: "
                                 "transformer with causal: true")
        if "seed" not in self.train.model_fields_set:
            self.train.seed = self.seed
        return self


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


# ---------------------------------------------------------------------------- parsing


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML file into a dict, with errors that name the file and line."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level; got "
                          f"{type(data).__name__}")
    return data


def parse(source: Config | RLConfig | dict[str, Any] | str | Path,
          overrides: list[str] | None = None) -> Config | RLConfig:
    """Validate a config given as a :class:`Config`, a dict or a YAML path.

    A config with an ``env`` key is a reinforcement-learning run and becomes an
    :class:`RLConfig`; any other becomes a :class:`Config`.
    """
    if isinstance(source, Config | RLConfig):
        if not overrides:
            return source
        raw: dict[str, Any] = source.model_dump(mode="json", exclude_unset=True)
    elif isinstance(source, dict):
        raw = json.loads(json.dumps(source, default=str))  # deep copy, plain types
    else:
        raw = load_yaml(source)
    if overrides:
        apply_overrides(raw, overrides)
    root: type[Config] | type[RLConfig] = RLConfig if "env" in raw else Config
    try:
        return root.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_explain(e, raw, root)) from None


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> None:
    """Apply ``key.path=value`` strings (values parsed as YAML) to a raw config dict."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key.path=value; got {item!r}")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        parts = key.strip().split(".")
        node: Any = raw
        for i, part in enumerate(parts[:-1]):
            node = _child(node, part, ".".join(parts[: i + 1]), create=True)
        last = parts[-1]
        if isinstance(node, list):
            idx = _index(node, last, key)
            node[idx] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(f"--set {key}: {'.'.join(parts[:-1])} is not a mapping")


def _index(node: list[Any], part: str, path: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"--set {path}: {part!r} is not an index of a list of {len(node)}")
    return int(part)


def _child(node: Any, part: str, path: str, create: bool) -> Any:
    if isinstance(node, list):
        return node[_index(node, part, path)]
    if not isinstance(node, dict):
        raise ConfigError(f"--set: {path} is not a mapping")
    if part not in node or node[part] is None:
        node[part] = {}
    return node[part]


def _explain(err: ValidationError, raw: dict[str, Any], root: type[BaseModel] = Config
             ) -> str:
    """Turn pydantic's report into messages that name the key and suggest fixes."""
    lines = []
    seen = set()
    for item in err.errors():
        loc = list(item["loc"])
        where = _dotted(_display(item["loc"]))
        if item["type"] == "extra_forbidden":
            parent = loc[:-1]
            valid = _valid_keys(parent, raw, root)
            key = str(loc[-1])
            close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            msg = f"unknown key {where!r}{hint} (valid keys here: {', '.join(sorted(valid))})"
        elif item["type"] == "union_tag_invalid":
            ctx = item.get("ctx", {})
            msg = (f"{where}.{ctx.get('discriminator', '').strip(chr(39))} must be one of "
                   f"{ctx.get('expected_tags')}; got {ctx.get('tag')!r}")
        elif item["type"] == "missing":
            msg = f"{where} is required"
        else:
            text = item["msg"].removeprefix("Value error, ")
            msg = f"{where or 'config'}: {text}; got {_short(item.get('input'))}"
        if msg not in seen:
            seen.add(msg)
            lines.append(msg)
    head = "invalid config: " if len(lines) == 1 else "invalid config:\n  "
    return head + "\n  ".join(lines)


_TAGS = {"numeric", "binary", "category", "image", "text", "next_token", "mlp", "cnn", "rnn",
         "transformer", "dqn", "ppo"}


def _display(loc: tuple[Any, ...]) -> list[Any]:
    """Drop the union tags pydantic inserts into a loc (``inputs.0.numeric.x``)."""
    out: list[Any] = []
    for i, part in enumerate(loc):
        prev = loc[i - 1] if i else None
        if part in _TAGS and (isinstance(prev, int) or prev in ("model", "network", "agent")):
            continue
        out.append(part)
    return out


def _dotted(loc: list[Any]) -> str:
    out = ""
    for p in loc:
        out += f".{p}" if out else str(p)
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _valid_keys(parent: list[Any], raw: dict[str, Any], root: type[BaseModel] = Config
                ) -> list[str]:
    """The field names allowed at ``parent`` (a pydantic loc without the bad key)."""
    model: Any = root
    node: Any = raw
    i = 0
    while i < len(parent):
        part = parent[i]
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        model = _field_model(model, part, node)
        if model is None:
            return []
        # pydantic puts the union tag into loc after list indexes and union fields
        if i + 1 < len(parent) and isinstance(parent[i + 1], str) and \
                parent[i + 1] not in getattr(model, "model_fields", {}) and \
                _resolve_tag(model, parent[i + 1]) is not None:
            model = _resolve_tag(model, parent[i + 1])
            i += 1
        i += 1
    return list(getattr(model, "model_fields", {}).keys())


def _field_model(model: Any, part: Any, node: Any) -> Any:
    import typing

    if isinstance(part, int):
        return model  # a list index: the element type was resolved already
    fields = getattr(model, "model_fields", None)
    if not fields or part not in fields:
        return None
    ann = fields[part].annotation
    # unwrap Optional / list / Annotated unions down to a model or a union of models
    for _ in range(5):
        origin = typing.get_origin(ann)
        if origin is typing.Annotated:
            ann = typing.get_args(ann)[0]
        elif origin in (list, tuple):
            ann = typing.get_args(ann)[0]
        elif origin is Union or str(origin) == "<class 'types.UnionType'>":
            models = [a for a in typing.get_args(ann) if isinstance(a, type)
                      and issubclass(a, BaseModel)]
            if len(models) == 1:
                ann = models[0]
            else:
                return _UnionOf(models)
        else:
            break
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


class _UnionOf:
    def __init__(self, models: list[Any]) -> None:
        self.models = models
        self.model_fields: dict[str, Any] = {}


def _resolve_tag(model: Any, tag: str) -> Any:
    if not isinstance(model, _UnionOf):
        return None
    for m in model.models:
        for field in ("type", "family", "algo"):
            f = m.model_fields.get(field)
            if f is not None and tag in getattr(f.annotation, "__args__", ()):
                return m
    return None


def json_schema(kind: Literal["supervised", "rl"] = "supervised") -> dict[str, Any]:
    """The JSON Schema of a config file, for editors: a supervised run or an RL run."""
    schema = (RLConfig if kind == "rl" else Config).model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "layerwise RL config" if kind == "rl" else "layerwise config"
    return schema


def config_hash(cfg: Config | RLConfig) -> str:
    """A stable hash of the resolved config (for lineage)."""
    text = json.dumps(cfg.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
