"""``layerwise train CONFIG [--output DIR] [--set key=value] [--resume] [--nproc N]``."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer


def train(
    config: Annotated[Path, typer.Argument(help="YAML config file")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o",  # noqa: UP007
                      help="run directory (default: runs/<name>)")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="override a config "  # noqa: UP007
                    "value, e.g. --set train.epochs=3 (repeatable)")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue the run in --output "
                                         "from its last checkpoint")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress output")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace a run already in "
                                            "--output (its model and checkpoints)")] = False,
    nproc: Annotated[int, typer.Option("--nproc", min=1, help="train data-parallel in N "
                                       "processes on this machine (torchrun)")] = 1,
    max_restarts: Annotated[int, typer.Option("--max-restarts", min=0, help="with --nproc: "
                            "restart failed workers up to this many times; they continue "
                            "from the last checkpoint")] = 0,
) -> None:
    """Train a model from a config; writes the model, metrics, history and curves."""
    from layerwise.api import train as run_train
    from layerwise.training import distributed

    if nproc > 1 and distributed.current() is None:
        flags = [*(["--output", str(output)] if output else []),
                 *(a for kv in set_ or [] for a in ("--set", kv)),
                 *(["--resume"] if resume else []), *(["--quiet"] if quiet else []),
                 *(["--overwrite"] if overwrite else [])]
        raise typer.Exit(_launch(str(config), flags, nproc, max_restarts))
    run = run_train(config, output=output, overrides=set_ or [], resume=resume,
                    progress="quiet" if quiet else None, overwrite=overwrite)
    world = distributed.current()
    if world is not None and not world.main:
        return  # rank 0 reports for the run
    if run.interrupted:
        st = run.fit.state if run.fit else None
        step = st.step if st else run.step if run.step is not None else "?"
        # the same command line continues the run: its --set overrides included
        sets = "".join(f" --set {shlex.quote(kv)}" for kv in set_ or [])
        print(f"stopped by SIGTERM at step {step}; checkpoint in "
              f"{run.dir / 'checkpoints'}; continue with: layerwise train "
              f"{shlex.quote(str(config))} --output {shlex.quote(str(run.dir))}{sets} "
              "--resume", file=sys.stderr)
        return
    if "evaluation" in run.metrics:  # a reinforcement-learning run
        _agent_summary(run)
        return
    _summary(run)


def _launch(config: str, flags: list[str], nproc: int, max_restarts: int) -> int:
    """Run this command in ``nproc`` worker processes under torchrun (a rendezvous on this
    machine); the workers' exit status is the command's."""
    import subprocess

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={nproc}", f"--max-restarts={max_restarts}",
           "-m", "layerwise", "train", config, *flags]
    return subprocess.call(cmd)


def _agent_summary(run: object) -> None:
    m = run.metrics  # type: ignore[attr-defined]
    ev, t = m["evaluation"], m["training"]
    print(f"{run.config.name}: evaluation over {ev['episodes']} episodes (seed "  # type: ignore[attr-defined]
          f"{ev['seed']}): return {ev['return_mean']:.2f} ± {ev['return_std']:.2f} "
          f"(min {ev['return_min']:.2f}, max {ev['return_max']:.2f}), length "
          f"{ev['length_mean']:.1f}")
    print(f"trained {t['env_steps']:,} environment steps ({t['episodes']:,} episodes) in "
          f"{t['seconds']:.1f} s, {t['steps_per_second']:.0f} steps/s; "
          f"{m['choices']['threads']} thread(s)")
    d = run.dir  # type: ignore[attr-defined]
    print(f"policy:  {d / 'model'}\nmetrics: {d / 'metrics.json'}\nhistory: "
          f"{d / 'history.csv'}\ncurves:  {d / 'curves.png'}\nconfig:  {d / 'config.yaml'}")


def _summary(run: object) -> None:
    from rich.console import Console
    from rich.table import Table

    m = run.metrics  # type: ignore[attr-defined]
    console = Console(stderr=False)
    table = Table(title=f"{run.config.name}: results", show_header=True)  # type: ignore[attr-defined]
    splits = [s for s in ("train", "validation", "test") if s in m]
    keys = []
    for s in splits:
        keys += [k for k, v in m[s].items() if isinstance(v, (int, float)) and k not in keys
                 and k != "count"]
    table.add_column("metric")
    for s in splits:
        table.add_column(s, justify="right")
    for k in keys:
        table.add_row(k, *(f"{m[s][k]:.4f}" if k in m[s] else "" for s in splits))
    console.print(table)
    t = m["training"]
    c = m["choices"]
    console.print(f"trained {t['epochs']} epochs ({t['steps']} steps) in {t['seconds']:.1f} s, "
                  f"{t['samples_per_second']:.0f} samples/s; precision {c['precision']}, "
                  f"{c['memory_format']}, {c['batching']} batching")
    d = run.dir  # type: ignore[attr-defined]
    console.print(f"model:   {d / 'model'}\nmetrics: {d / 'metrics.json'}\nhistory: "
                  f"{d / 'history.csv'}\ncurves:  {d / 'curves.png'}\nconfig:  "
                  f"{d / 'config.yaml'}")
