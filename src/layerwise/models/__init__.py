"""Model families (one file each), output heads and the registry."""

from layerwise.models.model import LayerwiseModel, build_model
from layerwise.models.registry import get_model, model_names, register_model

__all__ = ["LayerwiseModel", "build_model", "get_model", "model_names", "register_model"]
