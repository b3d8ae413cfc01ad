"""Experiments made of several training runs: cross-validation (``layerwise cv``).

This stage sits above :mod:`layerwise.api` because each of its experiments calls
``api.train`` once per run; it adds no training logic of its own.
"""

from layerwise.experiments.cv import CVResult, cross_validate

__all__ = ["CVResult", "cross_validate"]
