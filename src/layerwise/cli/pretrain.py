"""``layerwise pretrain CONFIG [--output DIR] [--set key=value] [--resume]``."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer


def pretrain(
    config: Annotated[Path, typer.Argument(help="YAML config file (with a pretrain section, "
                                           "or objective auto)")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o",  # noqa: UP007
                      help="run directory (default: runs/<name>)")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="override a config "  # noqa: UP007
                    "value, e.g. --set train.epochs=3 (repeatable)")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue the run in --output "
                                         "from its last checkpoint")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress output")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace a run already in "
                                            "--output")] = False,
) -> None:
    """Pre-train an encoder without labels (masked tokens for text, contrastive views for
    images); writes an encoder artifact that model.init_from starts from."""
    from layerwise.pretrain.runner import pretrain as run_pretrain

    run = run_pretrain(config, output=output, overrides=set_ or [], resume=resume,
                       overwrite=overwrite, progress="quiet" if quiet else None)
    if run.interrupted:
        sets = "".join(f" --set {shlex.quote(kv)}" for kv in set_ or [])
        print(f"stopped by SIGTERM; checkpoint in {run.dir / 'checkpoints'}; continue with: "
              f"layerwise pretrain {shlex.quote(str(config))} --output "
              f"{shlex.quote(str(run.dir))}{sets} --resume", file=sys.stderr)
        return
    p, t = run.metrics["pretrain"], run.metrics["training"]
    print(f"{run.config.name}: {p['objective']} pre-training on {p['rows']:,} rows, loss "
          f"{p['first_loss']:.4f} → {p['final_loss']:.4f} over {t['epochs']} epochs in "
          f"{t['seconds']:.1f} s")
    print(f"encoder: {run.model_dir}  (start from it with model.init_from: "
          f"{run.model_dir})")
