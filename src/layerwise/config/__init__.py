"""The whole configuration as pydantic models: validated once, unknown keys are errors.

A config is YAML, a dict, or a :class:`Config` object; all three go through :func:`parse`::

    >>> cfg = parse({"data": {"dataset": "wine"},
    ...              "inputs": [{"name": "alcohol", "type": "numeric"}],
    ...              "outputs": [{"name": "target", "type": "category"}],
    ...              "model": {"family": "mlp", "hidden": [32]}})
    >>> cfg.train.optimizer.name
    'adamw'

The package is a leaf: it imports nothing else of layerwise but ``errors``. Its modules:
``supervised`` (data, features, models, training), ``generative`` (autoencoder, VAE,
GAN, diffusion), ``rl`` (environments and agents),
``parsing`` (parse, overrides, error messages, JSON Schema). Each model family's config
also declares what the family accepts (``base._Family``: input and output kinds, generative
or not, train defaults); ``FAMILY_CONFIGS`` maps every family to its config.
"""

from layerwise.config.generative import (
    AnomalyConfig,
    AutoencoderConfig,
    DiffusionConfig,
    GANConfig,
    VAEConfig,
)
from layerwise.config.parsing import apply_overrides, config_hash, json_schema, load_yaml, parse
from layerwise.config.recommend import RecommendConfig
from layerwise.config.rl import (
    AgentConfig,
    DQNConfig,
    EnvConfig,
    PPOConfig,
    PrioritizedReplayConfig,
    RLConfig,
    RLTrainConfig,
)
from layerwise.config.seq2seq import Seq2SeqConfig, SequenceOutput
from layerwise.config.sequences import ForecastOutput, TagsOutput, TimeseriesInput
from layerwise.config.supervised import (
    FAMILY_CONFIGS,
    GENERATIVE_FAMILIES,
    Activation,
    AugmentConfig,
    BagConfig,
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
    SeriesInput,
    SplitConfig,
    TextInput,
    TrainConfig,
    TransformerConfig,
)

__all__ = [
    "FAMILY_CONFIGS",
    "GENERATIVE_FAMILIES",
    "Activation",
    "AgentConfig",
    "AnomalyConfig",
    "AutoencoderConfig",
    "AugmentConfig",
    "BagConfig",
    "BinaryInput",
    "BinaryOutput",
    "CNNConfig",
    "CategoryInput",
    "CategoryOutput",
    "Config",
    "ConvBlock",
    "DQNConfig",
    "DataConfig",
    "DiffusionConfig",
    "EarlyStoppingConfig",
    "EnvConfig",
    "ForecastOutput",
    "GANConfig",
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
    "RecommendConfig",
    "RLTrainConfig",
    "RNNConfig",
    "ScheduleConfig",
    "Seq2SeqConfig",
    "SequenceOutput",
    "SeriesInput",
    "SplitConfig",
    "TagsOutput",
    "TextInput",
    "TimeseriesInput",
    "TrainConfig",
    "TransformerConfig",
    "VAEConfig",
    "apply_overrides",
    "config_hash",
    "json_schema",
    "load_yaml",
    "parse",
]
