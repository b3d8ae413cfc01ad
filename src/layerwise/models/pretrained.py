"""A pre-trained encoder under the usual heads: transfer learning, five ways to fine-tune.

    text  {"ids", "lengths"} ──▶ MiniLM (6 blocks) ──▶ mean over tokens (or [CLS])  [B, 384]
    image [B, C, H, W] (standardised) ──▶ back to [0, 1] pixels ──▶ grey → 3 channels
          ──▶ resize to image_size² ──▶ (x − 0.498) / 0.502 ──▶ EfficientNet-Lite0
          ──▶ mean over positions                                                   [B, 1280]
    ──▶ concat tabular features ──▶ dropout ──▶ dense layers ──▶ heads (models/heads.py)

Fine-tuning (``model.finetune``):

=========  ============================================================================
frozen     the encoder is fixed and kept in eval mode (batch norm and dropout as in
           inference): a linear probe, or a small network on fixed features
full       every weight trains
gradual    epoch ``e`` trains the top ``e + 1`` blocks (ULMFiT's gradual unfreezing); the
           Trainer calls :meth:`train_epoch_start` at each epoch start, resumes included,
           so the frozen set is a function of the epoch and a resumed run matches
lora       low-rank adapters on the encoder's Linear layers train (models/lora.py); at the
           end of training they are merged into the weights unless ``lora.merge: false``
=========  ============================================================================

``batch_norm: frozen`` keeps the encoder's batch-norm layers in inference mode while the
rest fine-tunes: the published running statistics normalise every batch and are never
updated (Keras's advice for fine-tuning), which small batches of a new domain cannot
then disturb; their scale and shift still train.

``lr_decay`` gives each block its own learning rate, ``lr × lr_decay^k`` for the block
``k`` places below the top (:meth:`param_groups`; the Trainer builds its optimizer from
them). A model built for training loads the encoder's published weights; one rebuilt from
an artifact (``desc["restoring"]``) does not: its weights come from the artifact.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from layerwise.config.pretrained import PretrainedConfig
from layerwise.errors import ConfigError
from layerwise.models import hub
from layerwise.models.layers import TabularEncoder, dense_stack, masked_pool, trim
from layerwise.models.lora import apply_lora, merge_lora
from layerwise.models.registry import register_model

IMAGE_MEAN, IMAGE_STD = 0.498, 0.502  # EfficientNet-Lite's input normalisation (on [0, 1])


@register_model("pretrained")
class Pretrained(nn.Module):
    """See the module docstring; what it reads and predicts is declared by
    :class:`PretrainedConfig`."""

    config_class = PretrainedConfig

    def __init__(self, cfg: PretrainedConfig, desc: dict[str, Any]) -> None:
        super().__init__()
        self.cfg = cfg
        restoring = bool(desc.get("restoring"))
        if cfg.encoder == "minilm":
            self.input_name = _one_input(desc, "texts", "text", cfg.encoder)
            if desc["texts"][self.input_name].get("tokenizer") != "minilm":
                raise ConfigError(f"inputs {self.input_name!r}: model encoder minilm reads "
                                  "text tokenized as it was trained: set tokenizer: minilm")
            self.encoder = hub.minilm(pretrained=not restoring)
            width = hub.MINILM["hidden_size"]
        else:
            self.input_name = _one_input(desc, "images", "image", cfg.encoder)
            self.encoder = hub.efficientnet_lite0(cfg.image_size, pretrained=not restoring)
            stats = desc.get("image_stats", {}).get(  # undoes the input's standardising
                self.input_name, {"mean": [0.0], "std": [1.0]})
            self.register_buffer("pixel_mean", torch.tensor(stats["mean"]).view(1, -1, 1, 1),
                                 persistent=False)
            self.register_buffer("pixel_std", torch.tensor(stats["std"]).view(1, -1, 1, 1),
                                 persistent=False)
            width = 1280
        self.tabular = TabularEncoder.from_schema(desc)
        self.drop = nn.Dropout(cfg.dropout)
        self.dense, self.out_features = dense_stack(width + self.tabular.out_features,
                                                    cfg.dense, cfg.activation, cfg.dropout)
        self._prepare(restoring)

    @classmethod
    def from_config(cls, cfg: PretrainedConfig, desc: dict[str, Any]) -> Pretrained:
        return cls(cfg, desc)

    def _prepare(self, restoring: bool) -> None:
        """Freeze what the fine-tuning mode keeps fixed; add LoRA adapters (not to a
        merged artifact being restored: its weights already hold them)."""
        cfg = self.cfg
        if cfg.finetune in ("frozen", "lora"):
            self.encoder.requires_grad_(False)
        if cfg.finetune == "lora" and not (restoring and cfg.lora.merge):
            apply_lora(self.encoder, cfg.lora.targets, cfg.lora.rank, cfg.lora.alpha,
                       cfg.lora.dropout)

    # -- forward ------------------------------------------------------------------------
    def forward(self, inputs: dict[str, Any]) -> torch.Tensor:
        x = inputs[self.input_name]
        h = self._text(x) if self.cfg.encoder == "minilm" else self._image(x)   # [B, W]
        tab = self.tabular(inputs)
        if tab is not None:
            h = torch.cat([h, tab.to(h.dtype)], dim=1)
        return self.dense(self.drop(h))                                          # [B, F]

    def _text(self, text: dict[str, torch.Tensor]) -> torch.Tensor:
        ids, _, mask = trim(text)                                                # [B, T]
        states = self.encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        if self.cfg.pooling == "cls":
            return states[:, 0]                                                  # [B, 384]
        return masked_pool(states, mask, "mean")

    def _image(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.pixel_std + self.pixel_mean          # [B, C, H, W] pixels in [0, 1]
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)                   # grey → RGB
        side = self.cfg.image_size
        if tuple(x.shape[2:]) != (side, side):
            x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
        x = (x - IMAGE_MEAN) / IMAGE_STD
        return self.encoder.extract_features(x).mean(dim=(2, 3))  # [B, 1280]

    def train(self, mode: bool = True) -> Pretrained:
        super().train(mode)
        if mode and self.cfg.finetune == "frozen":
            self.encoder.eval()  # a fixed encoder: batch-norm statistics stay as published
        elif mode and self.cfg.batch_norm == "frozen":
            for m in self.encoder.modules():  # the statistics stay; scale and shift train
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    # -- fine-tuning --------------------------------------------------------------------
    def blocks(self) -> list[list[nn.Parameter]]:
        """The encoder's parameters by block, bottom (embeddings / stem) to top."""
        enc = self.encoder
        if self.cfg.encoder == "minilm":
            parts: list[nn.Module] = [enc.embeddings, *enc.encoder.layer]
            groups = [list(m.parameters()) for m in parts]
        else:
            groups = [[*enc._conv_stem.parameters(), *enc._bn0.parameters()],
                      *[list(b.parameters()) for b in enc._blocks],
                      [*enc._conv_head.parameters(), *enc._bn1.parameters()]]
        seen = {id(p) for g in groups for p in g}
        groups[0] += [p for p in enc.parameters() if id(p) not in seen]  # nothing is lost
        return groups

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Optimizer groups: this module's own layers at ``lr``, then each encoder block
        from the top at ``lr × lr_decay^k``. Gradual unfreezing lists every block (the
        optimizer is built once; a frozen parameter has no gradient and is skipped)."""
        everything = self.cfg.finetune == "gradual"
        enc = {id(p) for p in self.encoder.parameters()}
        groups = [{"params": [p for p in self.parameters() if id(p) not in enc], "lr": lr}]
        for k, params in enumerate(reversed(self.blocks())):
            chosen = [p for p in params if everything or p.requires_grad]
            if chosen:
                groups.append({"params": chosen, "lr": lr * self.cfg.lr_decay ** k})
        return groups

    def train_epoch_start(self, epoch: int) -> None:
        """Gradual unfreezing: epoch ``epoch`` (from 0) trains the top ``epoch + 1`` blocks."""
        if self.cfg.finetune != "gradual":
            return
        blocks = self.blocks()
        for i, params in enumerate(blocks):
            trainable = i >= len(blocks) - (epoch + 1)
            for p in params:
                p.requires_grad_(trainable)

    def train_end(self) -> None:
        """After an uninterrupted fit: merge LoRA adapters (``lora.merge``)."""
        if self.cfg.finetune == "lora" and self.cfg.lora.merge:
            merge_lora(self.encoder)


def _one_input(desc: dict[str, Any], key: str, kind: str, encoder: str) -> str:
    """The name of the encoder's one input; other text or image inputs are refused."""
    other, other_kind = {"texts": ("images", "image"), "images": ("texts", "text")}[key]
    if desc.get(other):
        raise ConfigError(f"model pretrained with encoder {encoder} cannot read {other_kind} "
                          f"inputs ({', '.join(sorted(desc[other]))}); it reads one {kind} "
                          "input and tabular ones")
    names = sorted(desc.get(key, {}))
    if len(names) != 1:
        raise ConfigError(f"model encoder {encoder} needs exactly one {kind} input; got "
                          f"{len(names)} ({', '.join(names) or 'none'})")
    return names[0]
