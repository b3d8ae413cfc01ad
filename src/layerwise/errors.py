"""The layerwise exception hierarchy.

Every error layerwise raises on purpose is a :class:`LayerwiseError`, and each class also
subclasses the matching built-in so that ``except ValueError`` keeps working::

    LayerwiseError(Exception)
    ├── ConfigError(ValueError)            a config key or value is wrong
    │   └── UnknownNameError(KeyError)     a registry lookup missed (lists the valid names)
    ├── DataError(ValueError)              input data is unreadable or malformed
    │   ├── MissingDependencyError(ImportError)  an optional source needs a package
    │   └── UnsafeFormatError              a pickle (or other code-carrying format) was offered
    ├── ArtifactError(ValueError)          a model directory is missing, broken or too new
    │   └── UnsafeArtifactError            weights that are not safetensors (e.g. a pickle)
    ├── TrainingError(RuntimeError)        training cannot go on
    │   └── NonFiniteError(ArithmeticError) too many non-finite losses/gradients in a row
    └── CheckpointError(RuntimeError)      a checkpoint cannot be written or resumed

Messages name the thing, what was expected and what was received, e.g.
``train.optimizer.lr must be a positive number; got -1``. Data errors name the file, the
row and the column.
"""

from __future__ import annotations

__all__ = [
    "ArtifactError",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "LayerwiseError",
    "MissingDependencyError",
    "NonFiniteError",
    "TrainingError",
    "UnknownNameError",
    "UnsafeArtifactError",
    "UnsafeFormatError",
]


class LayerwiseError(Exception):
    """Base class of every error layerwise raises on purpose."""


class ConfigError(LayerwiseError, ValueError):
    """A configuration key or value is invalid."""


class UnknownNameError(ConfigError, KeyError):
    """A name looked up in a registry does not exist; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class DataError(LayerwiseError, ValueError):
    """Input data is unreadable or malformed; the message names file, row and column."""


class MissingDependencyError(DataError, ImportError):
    """An optional data source or feature needs a package that is not installed."""


class UnsafeFormatError(DataError):
    """Data in a format that can execute code on load (pickle) was refused."""


class ArtifactError(LayerwiseError, ValueError):
    """A model directory is missing, malformed, or written by a newer format version."""


class UnsafeArtifactError(ArtifactError):
    """Weights are not in safetensors format (a pickle, a torch zip); loading was refused."""


class TrainingError(LayerwiseError, RuntimeError):
    """Training cannot continue."""


class NonFiniteError(TrainingError, ArithmeticError):
    """Too many consecutive steps had a non-finite loss or gradient."""


class CheckpointError(LayerwiseError, RuntimeError):
    """A checkpoint could not be written, found, or resumed."""
