"""The composed model: a family backbone plus one head per output.

    inputs (dict of tensors) → backbone → features [B, F] → heads → {output name: tensor}
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from layerwise.config import FAMILY_CONFIGS
from layerwise.config.base import either, families_for
from layerwise.errors import ConfigError
from layerwise.models.ctc import CTCHead
from layerwise.models.heads import Head, NextTokenHead, SequenceHead, build_head
from layerwise.models.registry import get_model
from layerwise.models.sequence_heads import sequence_head


class LayerwiseModel(nn.Module):
    """What ``layerwise train`` builds from a config; any ``nn.Module`` also trains."""

    def __init__(self, backbone: nn.Module,
                 heads: list[Head | NextTokenHead | SequenceHead],
                 tta: list[str] | tuple[str, ...] = ()) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleDict({h.name: h for h in heads})
        # inputs.<image>.tta: out of training, the outputs for these images and their
        # mirror images are averaged (the heads' logits or values)
        self.tta = list(tta)
        other = sorted(n for n, h in self.heads.items()
                       if h.kind not in ("category", "binary", "numeric"))
        if self.tta and other:
            raise ConfigError(f"inputs.{self.tta[0]}.tta averages class scores or values; "
                              f"outputs {', '.join(other)} are neither")
        # model.init_from: the parameters copied from a pre-trained encoder, their rate
        # (× lr) and the epochs they stay fixed (see warm_settings)
        self.warm: list[nn.Parameter] = []
        self.warm_lr, self.warm_frozen_epochs = 1.0, 0

    def warm_settings(self, names: list[str], lr: float, frozen_epochs: int) -> None:
        """The parameters ``names`` came from a pre-trained encoder (``model.init_from``):
        they train at ``lr`` × the optimizer's rate and stay fixed for the first
        ``frozen_epochs`` epochs (:meth:`train_epoch_start`, resumes included)."""
        if lr == 1.0 and frozen_epochs == 0:
            return
        if getattr(self.backbone, "param_groups", None) is not None:
            raise ConfigError("model.init_lr / init_frozen_epochs: this family sets its own "
                              "rates by depth (lr_decay, finetune); use those")
        params = dict(self.named_parameters())
        self.warm = [params[n] for n in names if n in params]
        self.warm_lr, self.warm_frozen_epochs = lr, frozen_epochs

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.tta and not self.training:
            plain = self._forward(inputs)
            mirror = self._forward({**inputs, **{k: inputs[k].flip(-1) for k in self.tta}})
            return {k: (v + mirror[k]) / 2 for k, v in plain.items()}
        return self._forward(inputs)

    def _forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        h = self.backbone(inputs)  # [B, F]
        if isinstance(h, tuple):  # a joint backbone: pooled [B, F], token states [B, T, C]
            pooled, tokens = h
            return {name: head(tokens if head.kind == "tags" else pooled)
                    for name, head in self.heads.items()}
        return {name: head(h) for name, head in self.heads.items()}

    def param_groups(self, lr: float) -> list[dict[str, Any]] | None:
        """Optimizer groups of a backbone that trains its parts at different rates
        (models/pretrained.py), the heads joining its first group; None for one rate."""
        groups = getattr(self.backbone, "param_groups", None)
        if groups is None and not self.warm:
            return None
        if groups is None:  # model.init_from: the copied tensors at their own rate
            warm = {id(p) for p in self.warm}
            fresh = [p for p in self.parameters() if id(p) not in warm and p.requires_grad]
            return [g for g in ({"params": fresh, "lr": lr},
                                {"params": self.warm, "lr": lr * self.warm_lr})
                    if g["params"]]
        out: list[dict[str, Any]] = groups(lr)
        out[0]["params"] = [*out[0]["params"], *self.heads.parameters()]
        return [g for g in out if g["params"]]

    def train_epoch_start(self, epoch: int) -> None:
        """Passed on to the backbone (e.g. gradual unfreezing); the Trainer calls it. The
        tensors copied by ``model.init_from`` are fixed before epoch
        ``init_frozen_epochs`` (a frozen parameter has no gradient: the optimizer skips it)."""
        if self.warm and self.warm_frozen_epochs:
            for p in self.warm:
                p.requires_grad_(epoch >= self.warm_frozen_epochs)
        hook = getattr(self.backbone, "train_epoch_start", None)
        if hook is not None:
            hook(epoch)

    def train_end(self) -> None:
        """Passed on to the backbone (e.g. merging LoRA adapters) after a whole fit."""
        hook = getattr(self.backbone, "train_end", None)
        if hook is not None:
            hook()

    def loss(self, outputs: dict[str, torch.Tensor],
             targets: dict[str, torch.Tensor]) -> torch.Tensor:
        total = None
        for name, head in self.heads.items():
            part = head.loss_weight * head.loss(outputs[name], targets[name])
            total = part if total is None else total + part
        if total is None:  # build_model refuses a model without outputs
            raise ConfigError("the model has no output heads: nothing to train")
        return total

    def compact(self, outputs: dict[str, torch.Tensor],
                targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-token logits ``[B, T, V]`` → per-row sums (``row_stats``), which is all the
        metrics need: validation keeps these instead of every batch's logits (batches of
        different lengths cannot be concatenated, and the logits can be large)."""
        return {name: head.row_stats(outputs[name], targets[name])  # type: ignore[operator]
                if hasattr(head, "row_stats") and outputs[name].dim() == 3 else outputs[name]
                for name, head in self.heads.items()}

    def metrics(self, outputs: dict[str, torch.Tensor],
                targets: dict[str, torch.Tensor]) -> dict[str, float]:
        single = len(self.heads) == 1
        out: dict[str, float] = {}
        for name, head in self.heads.items():
            for k, v in head.metrics(outputs[name], targets[name]).items():
                out[k if single else f"{name}_{k}"] = v
        return out


# the keys of a schema's description that name inputs, and the kind of input each holds
_NAMED_INPUTS = {"texts": "text", "series": "timeseries", "images": "image",
                 "rows": "series", "audio": "audio"}


def check_inputs(model_cfg: Any, output_cfgs: list[Any], desc: dict[str, Any]) -> None:
    """Refuse the inputs a family does not read: its config declares ``input_kinds``
    (config/; see base._Family), and the error suggests the families that fit."""
    for key, kind in _NAMED_INPUTS.items():
        names = sorted(desc.get(key, {}))
        if names and kind not in model_cfg.input_kinds:
            fits = families_for(FAMILY_CONFIGS, [kind], [o.type for o in output_cfgs])
            hint = f"; use family {either(fits)}" if fits else ""
            raise ConfigError(f"model {model_cfg.family} cannot read {kind} inputs "
                              f"({', '.join(names)}){hint}")


def build_model(model_cfg: Any, output_cfgs: list[Any], desc: dict[str, Any],
                class_weights: dict[str, torch.Tensor] | None = None,
                scales: dict[str, float] | None = None) -> LayerwiseModel:
    """Build backbone (from the registry) and heads for a described schema."""
    family = get_model(model_cfg.family)
    check_inputs(model_cfg, output_cfgs, desc)
    if model_cfg.generative:  # a whole model: it learns from its inputs
        return family.from_config(model_cfg, desc)  # type: ignore[attr-defined, no-any-return]
    backbone = family.from_config(model_cfg, desc)  # type: ignore[attr-defined]
    heads: list[Head | NextTokenHead | SequenceHead] = []
    for o in output_cfgs:
        if o.type == "next_token":  # a language model: the backbone's embedding is the head
            heads.append(NextTokenHead(o.name, backbone.lm_logits, o.loss_weight))
            continue
        if o.type in ("forecast", "tags"):  # see models/sequence_heads.py
            width = backbone.token_features if getattr(backbone, "joint", False) \
                else backbone.out_features  # a joint backbone's tags head reads token states
            heads.append(sequence_head(o, width, desc,
                                       (scales or {}).get(o.name, 1.0)))
            continue
        if o.type == "ctc":  # a transcript per clip: per-step scores (models/ctc.py)
            heads.append(CTCHead(o.name, backbone.out_features, desc["outputs"][o.name][1],
                                 o.loss_weight))
            continue
        if o.type == "sequence":  # seq2seq: the decoder's embedding is the head
            heads.append(SequenceHead(o.name, backbone.lm_logits, o.loss_weight,
                                      o.label_smoothing))
            continue
        heads.append(build_head(o, backbone.out_features, desc["outputs"][o.name],
                                (class_weights or {}).get(o.name),
                                (scales or {}).get(o.name, 1.0)))
    return LayerwiseModel(backbone, heads, desc.get("tta", ()))
