"""Config models of a supervised run: data, features, model families, training."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Union

from pydantic import Field, PrivateAttr, field_validator, model_validator

from layerwise.config.audio import AudioInput, CTCOutput
from layerwise.config.base import (
    CardConfig,
    _Family,
    _Strict,
    check_heads,
    either,
    families_for,
    family_configs,
)
from layerwise.config.columns import SeriesInput, _Columns
from layerwise.config.generative import (
    AutoencoderConfig,
    DiffusionConfig,
    GANConfig,
    VAEConfig,
)
from layerwise.config.pretrain import PretrainConfig
from layerwise.config.pretrained import PretrainedConfig
from layerwise.config.regularise import AdversarialConfig, EMAConfig, MixupConfig
from layerwise.config.seq2seq import Seq2SeqConfig, SequenceOutput, check_seq2seq
from layerwise.config.sequences import (
    ForecastOutput,
    TagsOutput,
    TimeseriesInput,
    check_sequence_features,
)
from layerwise.config.streaming import Budget, StreamConfig

# ---------------------------------------------------------------------------- data


class SplitConfig(_Strict):
    """How rows are divided into train / validation / test."""

    validation: float = Field(0.1, ge=0.0, lt=1.0, description="share held out for validation")
    test: float = Field(0.2, ge=0.0, lt=1.0, description="share held out for test (ignored "
                        "when the source has its own test part or test_path is given)")
    stratify: bool = Field(True, description="keep class shares equal across splits")
    column: str | None = Field(None, description="a column holding train/validation/test per row")
    seed: int | None = Field(None, description="split seed; defaults to the run seed")
    # cross-validation (set by `layerwise cv`, one run per fold): the test split is fold
    # `fold` of `folds` over the rows training draws from; see docs/decisions.md
    folds: int | None = Field(None, ge=2, description="k-fold: the number of folds; the "
                              "test split is one fold (split.test and a source's own test "
                              "part are then not used)")
    fold: int = Field(0, ge=0, description="k-fold: which fold is the test split, from 0")
    repeat: int = Field(0, ge=0, description="k-fold: the repetition (each reshuffles the "
                        "folds with another seed)")
    group: str | None = Field(None, description="k-fold: a column whose rows stay together "
                              "in one fold (grouped folds)")
    # few labels (issue 16): keep a seeded, stratified part of the training split; the rows
    # dropped are the "unlabelled rest" that `unlabelled: true` selects (docs/decisions.md)
    labelled: int | float | None = Field(None, description="keep only N training rows (an "
                                         "integer) or this share of them (a number in (0, 1]), "
                                         "stratified by the label and seeded by the split "
                                         "seed; validation and test are untouched")
    unlabelled: bool = Field(False, description="with labelled: train on the training rows "
                             "that labelled drops instead (for `layerwise pretrain`)")

    @model_validator(mode="after")
    def _sum_below_one(self) -> SplitConfig:
        if self.validation + self.test >= 1.0:
            raise ValueError(f"split.validation + split.test must be below 1; got "
                             f"{self.validation} + {self.test}")
        if self.folds is None and (self.fold or self.repeat or self.group):
            raise ValueError("split.fold, split.repeat and split.group need split.folds")
        if self.folds is not None and self.fold >= self.folds:
            raise ValueError(f"split.fold must be below split.folds ({self.folds}); got "
                             f"{self.fold}")
        if isinstance(self.labelled, float) and not 0.0 < self.labelled <= 1.0:
            raise ValueError(f"split.labelled as a share must be in (0, 1]; got {self.labelled}")
        if isinstance(self.labelled, int) and self.labelled < 1:
            raise ValueError(f"split.labelled as a row count must be at least 1; got "
                             f"{self.labelled}")
        if self.unlabelled and self.labelled is None:
            raise ValueError("split.unlabelled selects the rows split.labelled drops; set "
                             "split.labelled too")
        if self.folds is not None and self.column:
            raise ValueError("split.folds and split.column exclude each other: the folds "
                             "choose the test rows")
        return self


class DataConfig(_Strict):
    """Where the rows come from. Give exactly one of ``dataset`` and ``path``."""

    dataset: str | None = Field(None, description="a catalogue name (see `layerwise datasets`)")
    path: str | None = Field(None, description="a CSV, Parquet, JSON Lines, .npz file or an "
                             "image folder (one sub-folder per class); relative to the "
                             "config file's folder, then the current one; $VAR and ~ expand")
    format: Literal["csv", "parquet", "jsonl", "npz", "images", "audio"] | None = Field(
        None, description="file format; inferred from the extension when omitted")
    validation_path: str | None = None
    test_path: str | None = None
    split: SplitConfig = Field(default_factory=SplitConfig)
    delimiter: str = Field(",", min_length=1, max_length=1, description="CSV field "
                           "separator, one character: ';', '|', \"\\t\" (a tab; .tsv files "
                           "default to it)")
    encoding: str = Field("utf-8", min_length=1, description="text encoding of CSV and JSON "
                          "Lines files: utf-8 (a byte-order mark is skipped), latin-1, "
                          "cp1252, … (any name Python's codecs know)")
    skip_bad_rows: bool = Field(False, description="skip malformed rows (counted) instead of "
                                "stopping at the first one")
    max_bad_rows: int = Field(100, ge=0, description="with skip_bad_rows, stop once more than "
                              "this many rows were skipped")
    limit: int | None = Field(None, gt=0, description="use only the first N rows of the source")
    memory_budget: Budget = Field(
        None, description="in-memory budget for the encoded data, e.g. 64MB or 2GB (a "
        "number is MB); larger data streams from shards on disk (default: a quarter of RAM)")
    stream: StreamConfig = Field(default_factory=StreamConfig)
    # set by parse() for a relative path found nowhere: field → the absolute places it
    # tried, so that the reader's "not found" can name them (see docs/decisions.md, Paths)
    _looked_in: dict[str, tuple[str, ...]] = PrivateAttr(default_factory=dict)

    def looked_in(self, field: str) -> tuple[str, ...]:
        """The places :func:`~layerwise.config.parse` looked for ``field`` (``"path"``,
        ``"validation_path"``, ``"test_path"``) and found nothing; empty otherwise."""
        return self._looked_in.get(field, ())

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown text encoding {value!r}; e.g. utf-8, latin-1, "
                             "cp1252") from None
        return value

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
    crop: float = Field(1.0, gt=0.0, le=1.0, description="random resized crop: at least this "
                        "share of the area (aspect 3/4 to 4/3), resized back; 1: off")
    brightness: float = Field(0.0, ge=0.0, description="random offset in [-b, b] per image")
    contrast: float = Field(0.0, ge=0.0, lt=1.0, description="random contrast in [1-c, 1+c]")


class _Feature(_Strict):
    name: str = Field(min_length=1, description="column name in the data")


class NumericInput(_Columns):
    type: Literal["numeric"]
    normalize: Literal["standard", "minmax", "none"] = "standard"
    missing: Literal["error", "mean", "median", "constant"] = Field(
        "error", description="what to do with empty cells")
    fill_value: float = 0.0


class BinaryInput(_Columns):
    type: Literal["binary"]
    missing: Literal["error", "constant"] = "error"
    fill_value: bool = False


class CategoryInput(_Columns):
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
    tta: bool = Field(False, description="at prediction, average the model's outputs for "
                      "the image and its mirror image (test-time augmentation: only where "
                      "a horizontal flip keeps the label, as augment.flip does)")


class TextInput(_Columns):
    """Free text, tokenized by a tokenizer fitted on the training split (see data/text.py)."""

    type: Literal["text"]
    tokenizer: Literal["char", "word", "bpe", "minilm"] = Field(
        "word", description="char: characters; word: words and punctuation; bpe: byte-level "
        "byte-pair encoding (Hugging Face tokenizers); minilm: the pre-trained WordPiece "
        "tokenizer of model encoder minilm (saved in the artifact as JSON)")
    max_length: int | Literal["auto"] = Field(
        128, description="tokens kept per text, or auto: the 95th percentile of the training "
        "texts' token counts (at most 512); longer texts are truncated as `truncate` says")
    truncate: Literal["head", "tail", "head_tail", "chunks"] = Field(
        "head", description="what a text longer than max_length keeps: its start, its end, "
        "its first quarter and last three quarters, or (chunks) all of it up to max_chunks "
        "windows of max_length tokens, each encoded by the model and pooled (bag, rnn, "
        "transformer)")
    max_chunks: int = Field(8, ge=1, description="truncate: chunks: windows kept per text "
                            "(its start; a longer text is cut, and counted)")
    chunk_pool: Literal["mean", "max"] = Field(
        "mean", description="truncate: chunks: how the windows' encodings become one")
    vocab_size: int = Field(20000, ge=4, description="largest vocabulary, <pad> and <unk> "
                            "included (bpe: the target size)")
    min_frequency: int = Field(1, ge=1, description="rarer tokens map to <unk>")
    lowercase: bool = True
    missing: Literal["error", "constant"] = Field(
        "error", description="a missing cell (None/NaN); an empty string is an empty text")
    fill_value: str = ""

    @model_validator(mode="after")
    def _positive_length(self) -> TextInput:
        if self.max_length != "auto" and self.max_length < 1:
            raise ValueError(f"max_length must be a positive number of tokens or auto; got "
                             f"{self.max_length}")
        return self


InputFeature = Annotated[Union[NumericInput, BinaryInput, CategoryInput, ImageInput, TextInput,
                               TimeseriesInput, AudioInput, SeriesInput],
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


OutputFeature = Annotated[Union[CategoryOutput, BinaryOutput, NumericOutput, NextTokenOutput,
                                ForecastOutput, TagsOutput, SequenceOutput, CTCOutput],
                          Field(discriminator="type")]

# ---------------------------------------------------------------------------- models

Activation = Literal["relu", "gelu", "tanh", "sigmoid", "silu", "leaky_relu"]
# what the supervised families read and predict (declared in each config, see base._Family)
_TABULAR = ("numeric", "binary", "category")
_HEADS = ("category", "binary", "numeric")  # one head per output (models/heads.py)


class MLPConfig(_Family):
    """A multi-layer perceptron over all tabular inputs (images are flattened)."""

    input_kinds: ClassVar[tuple[str, ...]] = (*_TABULAR, "image", "series")
    output_kinds: ClassVar[tuple[str, ...]] = _HEADS

    family: Literal["mlp"]
    hidden: list[int] = Field(default_factory=lambda: [128, 64], description="hidden widths")
    activation: Activation = "relu"
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    norm: Literal["none", "batch", "layer"] = "none"
    skip: bool = Field(False, description="wide and deep: the inputs join the last hidden "
                       "layer's features, so the heads are a linear model of the inputs "
                       "plus what the hidden layers add (a strong form for small tables)")


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


class CNNConfig(_Family):
    """A convolutional network over one image input; tabular inputs join the dense head."""

    input_kinds: ClassVar[tuple[str, ...]] = (*_TABULAR, "image", "audio",  # audio: mel×frames
                                              "series")  # series: 1-D convolutions
    output_kinds: ClassVar[tuple[str, ...]] = _HEADS

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


class RNNConfig(_Family):
    """Recurrent network over text inputs (see models/rnn.py); tabular inputs join the head."""

    input_kinds: ClassVar[tuple[str, ...]] = (*_TABULAR, "text", "timeseries", "audio",
                                              "series")
    output_kinds: ClassVar[tuple[str, ...]] = (*_HEADS, "forecast", "tags", "ctc")
    train_defaults: ClassVar[dict[str, tuple[float, str]]] = {
        "grad_clip": (1.0, "the default for recurrent models (exploding gradients)")}

    family: Literal["rnn"]
    cell: Literal["lstm", "gru", "rnn"] = Field("lstm", description="rnn: vanilla tanh RNN")
    embedding_dim: int = Field(128, gt=0)
    hidden: int = Field(128, gt=0, description="hidden units per direction")
    layers: int = Field(1, gt=0, description="stacked recurrent layers")
    bidirectional: bool = False
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="on embeddings, between stacked "
                           "layers and in the dense head")
    word_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="training only: each token "
                                "becomes <unk> with this probability, so unseen words are met")
    pooling: Literal["last", "mean", "max", "attention"] = Field(
        "last", description="how the sequence of states becomes one vector")
    dense: list[int] = Field(default_factory=list, description="dense layers after pooling")
    activation: Activation = "relu"


class TransformerConfig(_Family):
    """Transformer encoder over text inputs (see models/transformer.py)."""

    input_kinds: ClassVar[tuple[str, ...]] = (*_TABULAR, "text", "timeseries", "series")
    output_kinds: ClassVar[tuple[str, ...]] = (*_HEADS, "forecast", "tags", "next_token")

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
        check_heads(self.d_model, self.heads, self.positions)
        return self

    def accepts_output(self, kind: str) -> bool:
        # a language model is causal; tagging reads every token's own state, so it needs
        # an encoder that sees the whole text and no cls token in front of it
        if kind == "next_token":
            return self.causal
        if kind == "tags":
            return not self.causal and self.pooling != "cls"
        return super().accepts_output(kind)


class BagConfig(_Family):
    """A bag of tokens and hashed token n-grams, averaged (fastText-style; models/bag.py):
    trains in seconds, a strong baseline for small data sets and long texts."""

    input_kinds: ClassVar[tuple[str, ...]] = (*_TABULAR, "text")
    output_kinds: ClassVar[tuple[str, ...]] = _HEADS

    family: Literal["bag"]
    embedding_dim: int = Field(32, gt=0, description="width of every token and n-gram vector")
    ngrams: int = Field(2, ge=1, le=5, description="token n-grams up to n: 1 is tokens alone; "
                        "with tokenizer: word these are word n-grams, with char character "
                        "n-grams")
    buckets: int = Field(16384, gt=0, description="hash buckets shared by the n-grams of "
                         "length 2 and more (collisions share a vector; every step updates "
                         "the whole table, so its cost grows with it)")
    pooling: Literal["mean", "sqrt", "sum"] = Field(
        "mean", description="mean, sum, or sum / sqrt(count) of the vectors of a text")
    unique: bool = Field(False, description="count each token and n-gram once per text (a "
                         "binary bag: repeats add nothing, as sublinear TF-IDF damps them)")
    weighting: Literal["none", "idf"] = Field(
        "none", description="idf: each token and n-gram vector weighted by its inverse "
        "document frequency in the training split, log((1 + N) / (1 + df)) + 1, as TF-IDF "
        "weighs words (the mean becomes the weighted mean)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="on the pooled vector and in "
                           "the dense head")
    dense: list[int] = Field(default_factory=list, description="dense layers after pooling "
                             "(none: a linear model on the pooled vector, as fastText)")
    activation: Activation = "relu"


ModelConfig = Annotated[Union[MLPConfig, CNNConfig, RNNConfig, TransformerConfig, BagConfig,
                              AutoencoderConfig, VAEConfig, GANConfig, DiffusionConfig,
                              Seq2SeqConfig, PretrainedConfig],
                        Field(discriminator="family")]

FAMILY_CONFIGS = family_configs(ModelConfig)
"""Every model family's config class by its tag, read off ``ModelConfig``."""
GENERATIVE_FAMILIES = tuple(tag for tag, c in FAMILY_CONFIGS.items() if c.generative)
"""The families that learn from their inputs alone, as their configs declare."""

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
    optimizers: dict[str, OptimizerConfig] = Field(
        default_factory=dict, description="per-phase optimizers of a model trained in phases "
        "(gan: generator, discriminator); a phase not named here uses `optimizer`")
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    grad_clip: float | None = Field(None, gt=0.0, description="clip the global gradient norm")
    accumulate: int = Field(1, gt=0, description="micro-batches per optimizer step")
    early_stopping: EarlyStoppingConfig | None = None
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 autocast where a short timing of the model's own "
        "step shows it clearly faster (CPUs with AMX/AVX512_BF16) or on CUDA; fp16 (with a "
        "gradient scaler) on GPUs without bf16")
    memory_format: Literal["auto", "channels_last", "contiguous"] = "auto"
    batching: Literal["auto", "memory", "loader"] = Field(
        "auto", description="memory: index-slices of preloaded tensors; loader: DataLoader")
    checkpoint_every: int = Field(500, ge=0, description="steps between checkpoints (0: epochs)")
    max_nonfinite_steps: int = Field(10, gt=0, description="skipped steps in a row: abort")
    telemetry_every: int = Field(25, gt=0, description="steps between per-layer gradient norms")
    progress: Literal["auto", "bar", "log", "quiet"] = "auto"
    threads: int | None = Field(None, gt=0, description="torch CPU threads (default: all cores)")
    replicas: int = Field(1, gt=0, description="compute each step as this many data-parallel "
                          "ranks would, in one process too (bit-equal weights on 1 or N)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda if present")
    compile: Literal["auto", "on", "off"] = Field(
        "auto", description="torch.compile the model: auto compiles on CUDA for runs of at "
        "least 2,000 steps (on CPU it did not pay, see docs/benchmarks.md)")
    adversarial: AdversarialConfig | None = Field(
        None, description="train on adversarial examples of image or numeric inputs (a "
        "step strategy, training/adversarial.py)")
    ema: EMAConfig | None = Field(
        None, description="keep an exponential moving average of the weights; validation "
        "and the artifact use it (training/averaging.py)")
    mixup: MixupConfig | None = Field(
        None, description="blend each batch with a shuffled copy of itself (mixup, CutMix) "
        "and the loss alike: a regulariser for few labels (training/mixup.py)")


# ---------------------------------------------------------------------------- top level


class Config(_Strict):
    """A whole run: data, features, model and training."""

    name: str = "run"
    seed: int = 0
    data: DataConfig
    inputs: list[InputFeature] = Field(min_length=1)
    outputs: list[OutputFeature] = Field(default_factory=list, description="what the model "
                                         "predicts; none for generative families")
    model: ModelConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    card: CardConfig = Field(default_factory=CardConfig, description="the model card's "
                             "own words: description, owners, licence, intended use, "
                             "limitations (left out of the config hash)")
    pretrain: PretrainConfig | None = Field(None, description="`layerwise pretrain`: the "
                                            "self-supervised objective (ignored by train)")

    @model_validator(mode="after")
    def _check(self) -> Config:
        names = [f.name for f in self.inputs] + [f.name for f in self.outputs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"feature names must be unique across inputs and outputs; "
                             f"repeated: {dup}")
        self._check_roles()
        check_sequence_features(self, FAMILY_CONFIGS)
        check_seq2seq(self)
        self._check_language_model()
        # the rules above name the kinds they know; this one holds for every family
        for o in self.outputs:
            if not self.model.accepts_output(o.type):
                raise ValueError(f"outputs {o.name!r}: model family {self.model.family} "
                                 f"cannot predict a {o.type} output; families that can: "
                                 f"{either(families_for(FAMILY_CONFIGS, (), [o.type]))}")
        if "seed" not in self.train.model_fields_set:
            self.train.seed = self.seed
        return self

    def _check_roles(self) -> None:
        """Outputs for a supervised family; none, and inputs with roles, for a generative
        one (what each family is: its config's declarations, base._Family)."""
        model, family = self.model, self.model.family
        if not model.generative:
            if not self.outputs:
                raise ValueError(f"outputs: model family {family} needs at least one output")
            return
        if self.outputs:
            raise ValueError(f"outputs: model family {family} learns from its inputs alone; "
                             f"remove outputs ({', '.join(o.name for o in self.outputs)}) or "
                             "give the column a role (model.condition, model.anomaly.label)")
        kinds = {f.name: f.type for f in self.inputs}
        anomaly = getattr(model, "anomaly", None)
        roles = {"model.condition": getattr(model, "condition", None),
                 "model.quality_label": getattr(model, "quality_label", None),
                 "model.anomaly.label": anomaly.label if anomaly is not None else None}
        categories = sorted(k for k, t in kinds.items() if t == "category")
        for key, name in roles.items():
            if name is not None and kinds.get(name) != "category":
                raise ValueError(f"{key} {name!r} must name a category input; category "
                                 f"inputs: {categories}")
        if not any(f.type in model.input_kinds and f.name not in roles.values()
                   for f in self.inputs):
            raise ValueError(f"inputs: model family {family} needs an image or tabular input "
                             "besides the ones with roles")

    def _check_language_model(self) -> None:
        texts = {f.name for f in self.inputs if f.type == "text"}
        for o in self.outputs:
            if o.type != "next_token":
                continue
            if o.input not in texts:
                raise ValueError(f"outputs {o.name!r}: input must name a text input "
                                 f"({sorted(texts)}); got {o.input!r}")
            if any(f.name == o.input and getattr(f, "truncate", "") == "chunks"
                   for f in self.inputs):
                raise ValueError(f"outputs {o.name!r}: a language model reads its text "
                                 "whole; truncate: chunks is for classifying long texts")
            if len(self.outputs) > 1 or len(self.inputs) > 1 or \
                    not self.model.accepts_output("next_token"):
                raise ValueError(f"outputs {o.name!r}: a next_token output is a language "
                                 "model: one text input, this one output, and model.family: "
                                 "transformer with causal: true")
