"""The run directory of every kind of run: supervised, generative and reinforcement learning.

    runs/<name>/
      config.yaml     the resolved config (written before anything trains)
      checkpoints/    last.ckpt: exact resume
      model/          the artifact (a policy for an agent)
      metrics.json    final metrics, the hardware choices, timings
      history.csv     one row per epoch (per log interval for an agent)
      curves.png      learning curves

One resume rule for all of them: ``--resume`` needs the folder's ``config.yaml`` and a
config equal to it except for the settings in :data:`MAY_CHANGE` (how long the run goes
on, how it reports, its threads). One seeding function, one lineage record, one
``__version__``. The tracking store hooks in here: :func:`start_run` opens the run's record,
:class:`TrackEpochs` logs each epoch, :func:`write_history` and :func:`write_metrics` add
the rest, and :func:`recording_failure` closes it with its status (layerwise.tracking).
"""

from __future__ import annotations

import contextlib
import csv
import json
import platform
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from layerwise.config import config_hash, parse
from layerwise.errors import CheckpointError
from layerwise.files import check_output_folder, dumps_json, write_text
from layerwise.tracking import recorder
from layerwise.training.callbacks import Callback
from layerwise.training.checkpoint import MAY_CHANGE, say_fresh_start, seed_all

__all__ = ["ERROR", "MAY_CHANGE", "RunDir", "TrackEpochs", "check_run", "check_same", "comparable",
           "lineage", "open_run", "recording_failure", "seed_all", "start_run", "versions",
           "write_history", "write_metrics"]


@dataclass(frozen=True)
class RunDir:
    """The paths of one run directory (see the module docstring)."""

    path: Path
    config: Path
    checkpoints: Path
    model: Path
    metrics: Path
    history: Path
    curves: Path

    @classmethod
    def at(cls, path: Path) -> RunDir:
        names = ("config.yaml", "checkpoints", "model", "metrics.json", "history.csv",
                 "curves.png")
        return cls(path, *(path / n for n in names))

    def has_checkpoint(self) -> bool:
        return (self.checkpoints / "last.ckpt").is_file()


@dataclass
class Run:
    """What a training run leaves behind, whatever it trained (a model, an agent, a
    recommender): its folder, resolved config, final metrics and history."""

    dir: Path
    config: Any
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False
    fit: Any = None                 # the Trainer's FitResult (models and recommenders)
    step: int | None = None         # agents: environment steps done

    @property
    def model_dir(self) -> Path:
        return self.dir / "model"


def comparable(cfg: Any) -> dict[str, Any]:
    """The config (a model or its JSON dump) as resume compares it: without the settings
    a resume may change."""
    d = dict(cfg) if isinstance(cfg, dict) else cfg.model_dump(mode="json")
    d["train"] = {k: v for k, v in d.get("train", {}).items() if k not in MAY_CHANGE}
    d.pop("card", None)  # the model card's words: documentation, free to change
    return d


def check_run(cfg: Any, output: str | Path | None, *, resume: bool = False,
              overwrite: bool = False) -> RunDir:
    """The run directory for ``cfg``, checked; nothing is written (see :func:`start_run`).

    Refused, each with a clear error: a path that is, or lies under, a file; with
    ``resume``, a folder whose config differs (beyond :data:`MAY_CHANGE`) or that holds a
    checkpoint without its config; without ``resume``, a folder that already holds a run
    (its ``config.yaml``), unless ``overwrite``.
    """
    run = RunDir.at(Path(output) if output else Path("runs") / cfg.name)
    check_output_folder(run.path, "output")  # the run directory: not a file, nor under one
    if resume and not run.config.is_file():
        # a requeued job repeats its command line: a run killed before it wrote anything
        # starts from the beginning; a checkpoint without its config is not ours to guess
        if run.has_checkpoint():
            raise CheckpointError(f"cannot resume: {run.path} holds a checkpoint but no "
                                  "config.yaml from the run that wrote it")
    elif resume:
        before = parse(yaml.safe_load(run.config.read_text(encoding="utf-8")))
        if type(before) is not type(cfg):
            kind = "an agent's" if hasattr(before, "env") else "a supervised"
            raise CheckpointError(f"cannot resume in {run.path}: it holds {kind} run")
        check_same(before, cfg, run.path)
    elif run.config.is_file() and not overwrite:
        state = "a finished run" if run.model.exists() else "an unfinished run"
        raise CheckpointError(f"{run.path} already holds {state}; pass --overwrite to "
                              "replace it, --resume to continue it, or choose another "
                              "--output")
    return run


def start_run(run: RunDir, cfg: Any, *, resume: bool = False, overwrite: bool = False,
              data_hash: str | None = None) -> None:
    """Create the folder and write ``config.yaml`` (after :func:`check_run` and the data
    checks: a run that fails validation leaves nothing behind). ``overwrite`` first
    removes the earlier run's checkpoint, model and error record. The run's record in the
    tracking store opens here (a resume continues the folder's newest record)."""
    try:
        run.path.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # e.g. no permission
        raise CheckpointError(f"cannot create the run directory {run.path}: "
                              f"{e.strerror or e}") from None
    if overwrite and not resume:
        for old in (run.checkpoints, run.model):
            shutil.rmtree(old, ignore_errors=True)
    (run.path / ERROR).unlink(missing_ok=True)
    if resume and not run.has_checkpoint():
        say_fresh_start(run.checkpoints / "last.ckpt")
    write_text(run.config, yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    if recorder.enabled():
        recorder.begin(run.path, cfg, resume=resume, data_hash=data_hash,
                       environment=environment())


def open_run(cfg: Any, output: str | Path | None, *, resume: bool = False,
             overwrite: bool = False) -> RunDir:
    """:func:`check_run` then :func:`start_run`: for runs with no data to check first."""
    run = check_run(cfg, output, resume=resume, overwrite=overwrite)
    start_run(run, cfg, resume=resume, overwrite=overwrite)
    return run


ERROR = "error.json"


@contextlib.contextmanager
def recording_failure(run: RunDir) -> Iterator[None]:
    """Write ``error.json`` (the error's type and message, and when) into the run folder
    if the block raises, then let the error go on. The run's tracking record closes here:
    failed, interrupted (Ctrl-C, or stopped before its final metrics) or finished."""
    try:
        yield
    except Exception as e:
        record = {"error": type(e).__name__, "message": str(e),
                  "when": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        try:
            write_text(run.path / ERROR, json.dumps(record, indent=2))
        except OSError:
            pass
        recorder.end(run.path, "failed", f"{type(e).__name__}: {e}")
        raise
    except BaseException:  # KeyboardInterrupt, SystemExit
        recorder.end(run.path, "interrupted")
        raise
    recorder.end(run.path)


class TrackEpochs(Callback):
    """Logs each epoch's history row into the run's tracking record as it ends."""

    def __init__(self, run: RunDir) -> None:
        self.path = run.path

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, Any]) -> None:
        recorder.log_epoch(self.path, int(logs.get("epoch", epoch + 1)), logs)


def check_same(before: Any, cfg: Any, where: Path) -> None:
    """Refuse to resume ``cfg`` in ``where`` if it differs from ``before`` beyond
    :data:`MAY_CHANGE`."""
    if comparable(before) != comparable(cfg):
        length = "total_steps" if hasattr(cfg, "env") else "epochs"
        raise CheckpointError(f"cannot resume in {where}: the config differs from the one "
                              f"the run started with (only train.{length}, train.progress "
                              "and train.threads may change)")


def write_history(path: Path, history: list[dict[str, Any]]) -> None:
    """history.csv: one row per epoch or log interval (columns: every key any row has)."""
    keys = list(dict.fromkeys(k for h in history for k in h))
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(history)
    recorder.log_history(path.parent, history)


def training_summary(fit: Any, t_data: float, n_params: int) -> dict[str, Any]:
    """``metrics.json → training`` of a finished ``Trainer.fit``: its time, speed, steps and
    how it ended."""
    return {"seconds": round(fit.state.train_time, 3), "data_seconds": round(t_data, 3),
            "samples_per_second": round(fit.samples_per_second, 1),
            "epochs": fit.epochs, "steps": fit.state.step, "skipped_steps": fit.state.skipped,
            "stopped_early": fit.state.stopped_early, "best_epoch": fit.best.get("epoch"),
            "parameters": n_params}


def write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    """metrics.json (valid JSON: NaN is written as null), also into the tracking record."""
    write_text(path, dumps_json(metrics, indent=2))
    recorder.log_final(path.parent, metrics)


def versions(**extra: str) -> dict[str, str]:
    """Library versions for the lineage record."""
    from layerwise import __version__

    return {"layerwise": __version__, "torch": str(torch.__version__), **extra,
            "python": platform.python_version()}


def environment() -> dict[str, Any]:
    """Where a run ran, for its tracking record: library versions, CPU kind, git commit."""
    from layerwise.training.hardware import cpu_kind, cpu_model

    return {"versions": versions(), "cpu_kind": cpu_kind(), "cpu": cpu_model(),
            "threads": torch.get_num_threads(), "platform": platform.platform(),
            "host": platform.node(), "git_commit": git_commit()}


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=False)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def lineage(cfg: Any, *, libraries: dict[str, str] | None = None, **extra: Any
            ) -> dict[str, Any]:
    """Where a model came from: config hash, ``extra`` (data hash, environment, ...), seed,
    library versions (plus ``libraries``) and the git commit."""
    return {"config_hash": config_hash(cfg), **extra, "seed": cfg.seed,
            "versions": versions(**(libraries or {})), "git_commit": git_commit()}
