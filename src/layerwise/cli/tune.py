"""``layerwise tune CONFIG [--trials N] [--space FILE] [--output DIR] [--study NAME]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def tune(
    config: Annotated[Path, typer.Argument(help="YAML config (its tune: section, or --space, "
                      "holds the search space)")],
    trials: Annotated[Optional[int], typer.Option("--trials", "-n", min=1, help="trials to "  # noqa: UP007
                      "complete or prune in all (a rerun resumes the study; default: "
                      "tune.trials, else 20)")] = None,
    space: Annotated[Optional[Path], typer.Option("--space", help="a YAML file with the "  # noqa: UP007
                     "tune: section (metric, direction, pruner, space)")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="folder of the "  # noqa: UP007
                      "trials, best.yaml and study.json (default: runs/<name>-tune)")] = None,
    study: Annotated[Optional[str], typer.Option("--study", help="study name (default: "  # noqa: UP007
                     "<name>-tune); the same name resumes it")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", min=0, help="sampler seed "  # noqa: UP007
                    "(default: the config's seed)")] = None,
    timeout: Annotated[Optional[float], typer.Option("--timeout", min=1, help="stop starting "  # noqa: UP007
                       "trials after this many seconds")] = None,
) -> None:
    """Search hyperparameters (TPE, pruning trials that fall behind); every trial is a
    tracked run, the best config is written to OUTPUT/best.yaml."""
    from layerwise.experiments.tune import tune as run_tune

    r = run_tune(config, trials=trials, space=space, output=output, study=study, seed=seed,
                 timeout=timeout)
    typer.echo(f"study {r.name}: {r.trials} trials ({r.pruned} pruned, {r.failed} failed)")
    if r.best_config is None:
        typer.echo("no trial completed")
        return
    params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in r.best_params.items())
    typer.echo(f"best value {r.best_value:.4g} with {params}")
    typer.echo(f"best config written to {r.best_config}")
