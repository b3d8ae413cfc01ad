"""The public API is small, sorted and pinned; `import layerwise` stays light."""

from __future__ import annotations

import subprocess
import sys

import layerwise

PINNED = ["Callback", "Config", "Predictor", "Run", "TrainConfig", "Trainer", "__version__",
          "errors", "evaluate", "load", "parse_config", "register_model", "train"]


def test_all_is_sorted_and_pinned() -> None:
    assert layerwise.__all__ == sorted(layerwise.__all__)
    assert layerwise.__all__ == PINNED


def test_every_public_name_resolves() -> None:
    for name in layerwise.__all__:
        assert getattr(layerwise, name) is not None


def test_import_is_lazy() -> None:
    out = subprocess.run([sys.executable, "-c",
                          "import sys, layerwise; print('torch' in sys.modules)"],
                         capture_output=True, text=True)
    assert out.stdout.strip() == "False"


def test_errors_subclass_the_builtins() -> None:
    from layerwise import errors as e

    assert issubclass(e.ConfigError, ValueError)
    assert issubclass(e.DataError, ValueError)
    assert issubclass(e.MissingDependencyError, ImportError)
    assert issubclass(e.NonFiniteError, ArithmeticError)
    assert issubclass(e.UnknownNameError, KeyError)
    assert issubclass(e.UnsafeArtifactError, e.ArtifactError)
    assert str(e.UnknownNameError("plain message")) == "plain message"
