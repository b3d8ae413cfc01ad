"""Config of the ``pretrained`` family: a pre-trained encoder, fine-tuned, under the heads.

    model:
      family: pretrained
      encoder: minilm            # text (inputs: tokenizer: minilm) | efficientnet-lite0 (images)
      finetune: full             # frozen | full | gradual | lora
      lr_decay: 0.8              # discriminative learning rates: × 0.8 per block from the top
      lora: {rank: 8, alpha: 16, targets: [query, key, value, dense], merge: true}

See models/pretrained.py for the model and docs/decisions.md (issue 16) for the choices.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from layerwise.config.base import _Family, _Strict

_TABULAR = ("numeric", "binary", "category")
_HEADS = ("category", "binary", "numeric")
Activation = Literal["relu", "gelu", "tanh", "sigmoid", "silu", "leaky_relu"]


class LoRAConfig(_Strict):
    """Low-rank adapters on the encoder's Linear layers (Hu et al., 2021): each adapted
    layer computes ``W x + (alpha / rank) · B A x`` with ``W`` frozen, ``A`` ``[rank, in]``
    and ``B`` ``[out, rank]`` trained (``B`` starts at zero, so training starts from the
    pre-trained model)."""

    rank: int = Field(8, gt=0, description="the adapters' inner width")
    alpha: float = Field(16.0, gt=0.0, description="scale: the update is alpha / rank · B A")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on the adapter's input")
    targets: list[str] = Field(
        default_factory=lambda: ["query", "key", "value", "dense"],
        description="the Linear layers adapted, by the last part of their name (minilm: "
        "query, key, value, dense — attention output and both feed-forward layers)")
    merge: bool = Field(True, description="the artifact holds merged weights (W + s·BA: a "
                        "plain encoder, as fast as the original); false: the frozen base and "
                        "the adapters apart")


class PretrainedConfig(_Family):
    """A pre-trained encoder (loaded offline from its package), pooled to one vector, with
    optional dense layers, then one head per output. Tabular inputs join before the dense
    layers."""

    input_kinds: ClassVar[tuple[str, ...]] = (*_TABULAR, "text", "image")
    output_kinds: ClassVar[tuple[str, ...]] = _HEADS
    train_defaults: ClassVar[dict[str, tuple[float, str]]] = {
        "grad_clip": (1.0, "fine-tuning a pre-trained encoder: one large early gradient "
                      "can undo what it learned")}

    family: Literal["pretrained"]
    encoder: Literal["minilm", "efficientnet-lite0"] = Field(
        description="minilm: all-MiniLM-L6-v2 text encoder (a text input with tokenizer: "
        "minilm); efficientnet-lite0: ImageNet CNN (one image input)")
    finetune: Literal["frozen", "full", "gradual", "lora"] = Field(
        "full", description="frozen: the encoder is fixed (a linear probe with no dense "
        "layers); full: every weight trains; gradual: the top block trains in the first "
        "epoch and one more block below it unfreezes each epoch; lora: low-rank adapters "
        "train, the encoder stays fixed")
    lr_decay: float = Field(1.0, gt=0.0, le=1.0, description="discriminative learning "
                            "rates: the heads and the top encoder block train at lr, the "
                            "block below at lr × lr_decay, the next at lr × lr_decay², … "
                            "(1: one rate)")
    pooling: Literal["mean", "cls"] = Field(
        "mean", description="text: the mean over tokens (how all-MiniLM-L6-v2 was trained) "
        "or the [CLS] state; images are always averaged over positions")
    image_size: int = Field(96, ge=32, le=512, description="images are resized to this "
                            "square side before the CNN: 224 is its ImageNet size; 96 costs "
                            "a fifth of that and keeps CPU fine-tuning affordable on small "
                            "inputs such as 28x28 Fashion-MNIST")
    batch_norm: Literal["train", "frozen"] = Field(
        "train", description="efficientnet-lite0 fine-tuned (full or gradual): train updates "
        "the batch-norm statistics from each batch; frozen keeps the published running "
        "statistics (the layers stay in inference mode, their scale and shift still train)")
    lora: LoRAConfig = Field(default_factory=LoRAConfig, description="finetune: lora")
    dense: list[int] = Field(default_factory=list, description="dense layers after pooling")
    activation: Activation = "gelu"
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="on the pooled vector and in "
                           "the dense layers")

    @model_validator(mode="after")
    def _fits_encoder(self) -> PretrainedConfig:
        if self.finetune == "lora" and self.encoder == "efficientnet-lite0":
            raise ValueError("finetune: lora adapts Linear layers and efficientnet-lite0 is "
                             "convolutional; use finetune: full, gradual or frozen")
        if self.batch_norm == "frozen" and self.encoder != "efficientnet-lite0":
            raise ValueError("batch_norm: frozen is for efficientnet-lite0; minilm has no "
                             "batch norm (its layer norms need no statistics)")
        if self.pooling == "cls" and self.encoder != "minilm":
            raise ValueError("pooling: cls is for text encoders (minilm)")
        return self
