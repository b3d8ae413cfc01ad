"""``layerwise evaluate MODEL_DIR [DATA] [--output FILE]``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer


def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="a model directory (runs/<name>/model)")],
    data: Annotated[Optional[Path], typer.Argument(help="labelled data file; default: the "  # noqa: UP007
                    "run's own test split")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="write the "  # noqa: UP007
                      "metrics as JSON here")] = None,
) -> None:
    """Evaluate a saved model: accuracy, macro-F1, per-class results, confusion matrix."""
    from layerwise.api import evaluate as run_evaluate

    metrics = run_evaluate(model_dir, data)
    text = json.dumps(metrics, indent=2)
    if output:
        output.write_text(text)
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    for k, v in scalars.items():
        print(f"{k:>10}: {v:.4f}" if isinstance(v, float) else f"{k:>10}: {v}")
    if output:
        print(f"metrics written to {output}")
    elif not scalars:
        print(text)
