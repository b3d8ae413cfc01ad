"""``model.init_from``: copy a pre-trained encoder's weights into a freshly built model.

The weights file is read as safetensors only (a pickle is refused before anything reads
it). Every tensor of the artifact whose name is also one of the model's is copied; one of
another shape is a :class:`ConfigError` naming the tensor and both shapes (a config whose
widths differ from the pre-training's), and so is an artifact of which no tensor matches
(another family, or another input name). The pre-training head is not in the artifact;
the new model's heads keep their seeded initialisation.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from layerwise.data.encoder_artifact import WEIGHTS, read
from layerwise.errors import ConfigError
from layerwise.files import check_finite, load_safetensors


def warm_start(model: nn.Module, ref: str, lr: float = 1.0, frozen_epochs: int = 0
               ) -> dict[str, Any]:
    """Copy the matching tensors of the artifact ``ref`` names into ``model``; returns
    ``{"path", "copied", "tensors"}`` (what was copied, of how many the model has). The
    copied tensors then train at ``lr`` × the optimizer's rate and stay fixed for the
    first ``frozen_epochs`` epochs (``model.init_lr``, ``model.init_frozen_epochs``;
    :meth:`LayerwiseModel.warm_settings`)."""
    path, meta = read(ref)
    tensors = load_safetensors(path / WEIGHTS)
    own = model.state_dict()
    matched = [k for k in own if k in tensors]  # in the model's order: the first layer first
    if not matched:
        raise ConfigError(f"model.init_from: no tensor of {path / WEIGHTS} matches this "
                          f"model (it holds {meta.get('family')!r} weights such as "
                          f"{sorted(tensors)[:2]}; this model has {sorted(own)[:2]}); "
                          "pre-train the same family over the same input names")
    for k in matched:
        if tuple(tensors[k].shape) != tuple(own[k].shape):
            raise ConfigError(f"model.init_from: tensor {k} has shape "
                              f"{list(tensors[k].shape)} in {path / WEIGHTS} but "
                              f"{list(own[k].shape)} in this model; use the model settings "
                              "(widths, layers, vocabulary) of the pre-training")
    check_finite(path / WEIGHTS, tensors, matched)
    with torch.no_grad():
        for k in matched:
            own[k].copy_(tensors[k].to(own[k].dtype))
    settings = getattr(model, "warm_settings", None)  # model.init_lr, init_frozen_epochs
    if settings is not None:
        settings(matched, lr, frozen_epochs)
    elif lr != 1.0 or frozen_epochs:
        raise ConfigError("model.init_lr / init_frozen_epochs need a model with output "
                          f"heads; {type(model).__name__} trains as one piece")
    return {"path": str(path), "objective": meta.get("objective"), "copied": len(matched),
            "tensors": len(own)}
