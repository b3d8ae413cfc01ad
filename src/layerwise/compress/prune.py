"""Structured pruning that makes the network smaller in fact, then fine-tuning.

torch-pruning removes whole channels (convolutions) and neurons (dense layers), the same
share ``amount`` of each layer, ranked by L2 norm, and rewires what depends on them (batch
norms, the next layer's inputs, a flatten). The output heads keep their size. The pruned
network is a plain model of the same family with narrower layers, so the child's config
says the new widths and it loads like any artifact; no masks, nothing sparse. A short
fine-tune through the Trainer (the run's own training settings, fewer epochs) then wins
back what the cut lost.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from layerwise.artifact import rebuild
from layerwise.config import Config
from layerwise.data.build import Schema
from layerwise.errors import ArtifactError, ConfigError
from layerwise.inference.onnx import require

FAMILIES = ("cnn", "mlp")


def _joined(model: nn.Module, inputs: Any) -> torch.Tensor:
    """Every output in one tensor: the graph torch-pruning traces must reach every head."""
    out = model(inputs[0] if isinstance(inputs, list) else inputs)
    return torch.cat([o.flatten(1) for o in out.values()], dim=1)


def prune(model: nn.Module, example: Any, amount: float) -> nn.Module:
    """Remove ``amount`` (0–1) of the channels/neurons of every hidden layer, in place."""
    tp = require("torch_pruning")
    if not 0.0 < amount < 1.0:
        raise ConfigError(f"--amount must be a fraction between 0 and 1; got {amount}")
    model.eval()
    heads = list(getattr(model, "heads", {}).values())
    pruner = tp.pruner.MagnitudePruner(
        model, example_inputs=[example], importance=tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=amount, ignored_layers=heads, forward_fn=_joined)
    pruner.step()
    return model


def widths(cfg: Config, model: nn.Module) -> Config:
    """The config whose model has the pruned widths (new ``filters`` and ``dense`` for a
    CNN, ``hidden`` for an MLP)."""
    family = cfg.model.family
    model_cfg: Any = cfg.model.model_copy(deep=True)
    backbone = model.backbone  # type: ignore[union-attr]
    if family == "cnn":
        for block, stage in zip(model_cfg.blocks, backbone.stages, strict=True):
            outs = {m.out_channels for m in stage.convs if isinstance(m, nn.Conv2d)}
            if len(outs) != 1:
                raise ArtifactError(f"pruning left uneven widths {sorted(outs)} in one block")
            block.filters = outs.pop()
        model_cfg.dense = [m.out_features for m in backbone.dense if isinstance(m, nn.Linear)]
    elif family == "mlp":
        model_cfg.hidden = [m.out_features for m in backbone.body if isinstance(m, nn.Linear)]
    else:
        raise ConfigError(f"structured pruning supports the families {', '.join(FAMILIES)}; "
                          f"this model is {family!r}")
    return cfg.model_copy(update={"model": model_cfg})


def as_family_model(cfg: Config, schema: Schema, pruned: nn.Module) -> nn.Module:
    """A freshly built model of the pruned config holding the pruned weights: proof that
    the child loads as an artifact (a mismatch is an error here, not at load time)."""
    fresh = rebuild(cfg, schema)
    try:
        fresh.load_state_dict(pruned.state_dict())
    except RuntimeError as e:
        raise ArtifactError(f"the pruned network does not fit its config: "
                            f"{str(e).splitlines()[0]}") from None
    return fresh


def check_family(cfg: Config) -> None:
    if cfg.model.family not in FAMILIES:
        raise ConfigError(f"structured pruning supports the families {', '.join(FAMILIES)}; "
                          f"this model is {cfg.model.family!r}")
