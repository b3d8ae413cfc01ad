"""``layerwise cv CONFIG --folds K [--repeats R] [--group COL] [--set k=v] [--output DIR]``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer


def cv(
    config: Annotated[Path, typer.Argument(help="YAML config file")],
    folds: Annotated[int, typer.Option("--folds", "-k", help="number of folds (>= 2)")] = 5,
    repeats: Annotated[int, typer.Option("--repeats", "-r", help="repetitions, each with "
                                         "the folds reshuffled")] = 1,
    group: Annotated[Optional[str], typer.Option("--group", help="a column whose rows "  # noqa: UP007
                     "stay together in one fold")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="override a config "  # noqa: UP007
                    "value, e.g. --set train.epochs=3 (repeatable)")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="folder of the "  # noqa: UP007
                      "fold runs and the summary (default: runs/<name>-cv)")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="reuse finished folds in "
                                         "--output and continue an interrupted one")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="retrain folds already in "
                                            "--output")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress output")] = False,
) -> None:
    """Cross-validate a config: one full training run per fold, stratified (or grouped)
    folds; prints the per-fold table and the mean with a 95% t-interval."""
    from layerwise.experiments import cross_validate

    res = cross_validate(config, folds=folds, repeats=repeats, group=group,
                         overrides=set_ or [], output=output, resume=resume,
                         overwrite=overwrite, progress="quiet" if quiet else None)
    if res.interrupted:
        print(f"stopped by SIGTERM after {len(res.folds)} finished fold(s); continue with "
              f"the same command and --resume --output {res.dir}", file=sys.stderr)
        return
    print((res.dir / "cv.md").read_text(encoding="utf-8"))
    print(f"written: {res.dir / 'cv.json'}, {res.dir / 'cv.csv'}, {res.dir / 'cv.md'}")
