"""The whole configuration as pydantic models: validated once, unknown keys are errors.

A config is YAML, a dict, or a :class:`Config` object; all three go through :func:`parse`::

    >>> cfg = parse({"data": {"dataset": "wine"},
    ...              "inputs": [{"name": "alcohol", "type": "numeric"}],
    ...              "outputs": [{"name": "target", "type": "category"}],
    ...              "model": {"family": "mlp", "hidden": [32]}})
    >>> cfg.train.optimizer.name
    'adamw'

The package is a leaf: it imports nothing else of layerwise but ``errors``. Its modules:
``supervised`` (data, features, models, training), ``rl`` (environments and agents),
``parsing`` (parse, overrides, error messages, JSON Schema).
"""

from layerwise.config.parsing import apply_overrides, config_hash, json_schema, load_yaml, parse
from layerwise.config.rl import (
    AgentConfig,
    DQNConfig,
    EnvConfig,
    PPOConfig,
    PrioritizedReplayConfig,
    RLConfig,
    RLTrainConfig,
)
from layerwise.config.supervised import (
    Activation,
    AugmentConfig,
    BinaryInput,
    BinaryOutput,
    CategoryInput,
    CategoryOutput,
    CNNConfig,
    Config,
    ConvBlock,
    DataConfig,
    EarlyStoppingConfig,
    ImageInput,
    InputFeature,
    MLPConfig,
    ModelConfig,
    NextTokenOutput,
    NumericInput,
    NumericOutput,
    OptimizerConfig,
    OutputFeature,
    RNNConfig,
    ScheduleConfig,
    SplitConfig,
    TextInput,
    TrainConfig,
    TransformerConfig,
)

__all__ = [
    "Activation",
    "AgentConfig",
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
    "InputFeature",
    "MLPConfig",
    "ModelConfig",
    "NextTokenOutput",
    "NumericInput",
    "NumericOutput",
    "OptimizerConfig",
    "OutputFeature",
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
