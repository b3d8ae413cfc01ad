"""``layerwise evaluate MODEL_DIR [DATA] [--output FILE] [--episodes N] [--seed S]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="a model directory (runs/<name>/model)")],
    data: Annotated[Optional[Path], typer.Argument(help="labelled data file; default: the "  # noqa: UP007
                    "run's own test split")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="write the "  # noqa: UP007
                      "metrics as JSON here")] = None,
    episodes: Annotated[Optional[int], typer.Option("--episodes", "-n", min=1, help="policy: "  # noqa: UP007
                        "episodes to run (default: the run's eval_episodes)")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", min=0, help="policy: seed of the "  # noqa: UP007
                    "episodes (default: the run's eval_seed)")] = None,
) -> None:
    """Evaluate a saved model: accuracy, macro-F1, per-class results, confusion matrix.

    For a policy (a reinforcement-learning run): the return over deterministic episodes.
    """
    from layerwise.api import evaluate as run_evaluate
    from layerwise.files import check_output_file, dumps_json, write_text

    check_output_file(output, "--output")
    metrics = run_evaluate(model_dir, data, episodes=episodes, seed=seed)
    text = dumps_json(metrics, indent=2)  # an undefined metric (NaN) is written as null
    if output:
        write_text(output, text)
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    for k, v in scalars.items():
        print(f"{k:>10}: {v:.4f}" if isinstance(v, float) else f"{k:>10}: {v}")
    if output:
        print(f"metrics written to {output}")
    elif not scalars:
        print(text)
