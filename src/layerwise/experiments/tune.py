"""Hyperparameter search: TPE sampling, pruning on the per-epoch validation metric, every
trial an ordinary run recorded in the tracking store.

    >>> from layerwise.experiments.tune import tune                   # doctest: +SKIP
    >>> study = tune("examples/fashion_cnn.yaml", trials=20)
    >>> study.best_config                                             # runs/<name>-tune/best.yaml

The search space lives in the config's ``tune:`` section, or in a file holding that
section (``--space``)::

    tune:
      metric: val_accuracy          # a per-epoch history key (the Trainer logs val_*)
      direction: maximize           # default: minimize for losses and errors, else maximize
      pruner: median                # median (default), hyperband or none
      startup_trials: 5             # trials run in full before pruning starts
      space:                        # config keys (as --set writes them) → a distribution
        train.optimizer.lr: {log_uniform: [1.0e-4, 1.0e-1]}
        model.dropout: {uniform: [0.0, 0.5]}
        train.batch_size: {choice: [64, 128, 256]}
        model.dense.0: {int: [64, 512], log: true}

Trials run in ``OUTPUT/trial-N``; the study lives in the tracking database (the same
server database, or for SQLite a journal file beside ``layerwise.db``, which parallel
workers share without "database is locked"); running the command again resumes it until
``trials`` trials are complete or pruned. The best trial's resolved config is written to
``OUTPUT/best.yaml`` and a summary to ``OUTPUT/study.json``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerwise import api
from layerwise.config import RLConfig, load_yaml, parse
from layerwise.config.parsing import resolve_paths
from layerwise.errors import ConfigError, LayerwiseError, TrainingError
from layerwise.files import dumps_json, write_text
from layerwise.tracking import recorder
from layerwise.tracking.store import default_uri
from layerwise.tracking.studies import optuna_module, storage_for
from layerwise.training import Callback

KINDS = ("uniform", "log_uniform", "int", "choice")
SETTINGS = ("metric", "direction", "pruner", "startup_trials", "space", "trials")


class TrainingInterrupted(TrainingError):
    """A trial's training was stopped by SIGTERM or Ctrl-C: the study stops with it."""


@dataclass
class StudyResult:
    """What ``tune`` leaves behind."""

    dir: Path
    name: str
    best_value: float | None
    best_params: dict[str, Any]
    best_config: Path | None
    trials: int
    pruned: int
    failed: int
    best_run: Path | None = None  # the best trial's run directory


def read_settings(config: str | Path, space: str | Path | None) -> tuple[dict[str, Any],
                                                                          dict[str, Any]]:
    """The config (its ``tune:`` section removed, data paths resolved beside the file) and
    the tuning settings (from ``space`` if given, else that section)."""
    raw = load_yaml(config)
    section = raw.pop("tune", None)
    resolve_paths(raw, Path(config).parent)
    if space is not None:
        loaded = load_yaml(space)
        section = loaded.get("tune", loaded)
    if not isinstance(section, dict) or not section.get("space"):
        where = space or config
        raise ConfigError(f"{where}: no search space; add a tune: section with space: "
                          "{key: {log_uniform: [low, high]}, ...} (see layerwise tune --help)")
    unknown = sorted(set(section) - set(SETTINGS))
    if unknown:
        raise ConfigError(f"tune: unknown settings {unknown}; known: {list(SETTINGS)}")
    for key, dist in section["space"].items():
        check_distribution(key, dist)
    return raw, section


def check_distribution(key: str, dist: Any) -> None:
    """One ``space`` entry: a mapping with exactly one of :data:`KINDS` (and ``log`` for
    ``int``), with its bounds or choices; a ConfigError naming the key otherwise."""
    kinds = [k for k in KINDS if isinstance(dist, dict) and k in dist]
    if len(kinds) != 1 or set(dist) - {kinds[0], "log", "step"}:
        raise ConfigError(f"tune.space.{key}: expected one of {', '.join(KINDS)}, e.g. "
                          "{log_uniform: [0.0001, 0.1]}; got " + repr(dist))
    value = dist[kinds[0]]
    if kinds[0] == "choice":
        if not isinstance(value, list) or not value:
            raise ConfigError(f"tune.space.{key}.choice: expected a non-empty list")
        return
    ok = isinstance(value, list) and len(value) == 2 and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    if not ok or value[0] >= value[1] or (kinds[0] == "log_uniform" and value[0] <= 0):
        raise ConfigError(f"tune.space.{key}.{kinds[0]}: expected [low, high] with low < "
                          f"high{' and low > 0' if kinds[0] == 'log_uniform' else ''}; "
                          f"got {value!r}")


def suggest(trial: Any, space: dict[str, Any]) -> dict[str, Any]:
    """One value per key of the space, drawn by the trial's sampler."""
    out = {}
    for key, dist in space.items():
        if "uniform" in dist:
            out[key] = trial.suggest_float(key, *dist["uniform"])
        elif "log_uniform" in dist:
            out[key] = trial.suggest_float(key, *dist["log_uniform"], log=True)
        elif "int" in dist:
            lo, hi = dist["int"]
            out[key] = trial.suggest_int(key, int(lo), int(hi), step=int(dist.get("step", 1)),
                                         log=bool(dist.get("log", False)))
        else:
            out[key] = trial.suggest_categorical(key, dist["choice"])
    return out


def direction_for(settings: dict[str, Any]) -> str:
    d = settings.get("direction")
    if d is None:
        m = settings.get("metric", "val_loss")
        return "minimize" if "loss" in m or m.endswith(("mae", "rmse", "error", "cer")) \
            else "maximize"
    if d not in ("minimize", "maximize"):
        raise ConfigError(f"tune.direction: expected minimize or maximize; got {d!r}")
    return str(d)


class Pruning(Callback):
    """Reports the trial's metric after each epoch; when the pruner says the trial is
    behind, asks the Trainer to stop after this epoch (a clean stop: the run finishes,
    is scored and recorded, tagged ``pruned``)."""

    def __init__(self, trial: Any, metric: str, run_dir: Path) -> None:
        self.trial, self.metric, self.run_dir = trial, metric, run_dir
        self.pruned_at: int | None = None
        self.values: list[float] = []

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, Any]) -> None:
        if self.metric not in logs:
            raise ConfigError(f"tune.metric {self.metric!r} is not logged per epoch; "
                              f"logged: {', '.join(k for k in logs if '/' not in k)}")
        value = float(logs[self.metric])
        self.values.append(value)
        self.trial.report(value, epoch)
        if self.trial.should_prune():
            self.pruned_at = epoch + 1
            trainer.should_stop = True
            recorder.add_tags(self.run_dir, pruned=True, pruned_after_epoch=epoch + 1)


def _pruner(settings: dict[str, Any]) -> Any:
    optuna = optuna_module()
    name = settings.get("pruner", "median")
    startup = int(settings.get("startup_trials", 5))
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    if name in ("none", None):
        return optuna.pruners.NopPruner()
    raise ConfigError(f"tune.pruner: expected median, hyperband or none; got {name!r}")


def _objective(raw: dict[str, Any], settings: dict[str, Any], out: Path, study: str) -> Any:
    metric = settings.get("metric", "val_loss")

    def objective(trial: Any) -> float:
        params = suggest(trial, settings["space"])
        overrides = [f"{k}={json.dumps(v)}" for k, v in params.items()]
        cfg = parse(raw, overrides)
        run_dir = out / f"trial-{trial.number}"
        cb = Pruning(trial, metric, run_dir)
        with recorder.labelled("tune", study=study, trial=trial.number, params=params):
            run = api.train(cfg, output=run_dir, callbacks=[cb], progress="quiet",
                            overwrite=True)
        trial.set_user_attr("run_dir", str(run.dir))
        if run.interrupted:  # SIGTERM (or Ctrl-C): the whole study stops, not one trial;
            trial.study.stop()  # the trial is recorded failed; a resume runs a new one
            raise TrainingInterrupted(f"trial {trial.number} was interrupted (SIGTERM); "
                                      "the study stops here and resumes with the same command")
        if cb.pruned_at is not None:
            raise optuna_module().TrialPruned(f"pruned after epoch {cb.pruned_at}")
        if not cb.values:
            raise ConfigError(f"trial {trial.number}: no epoch reported {metric}")
        return cb.values[-1]
    return objective


def _finished(study: Any) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,
                                                         TrialState.PRUNED)))


def tune(config: str | Path, *, trials: int | None = None, space: str | Path | None = None,
         output: str | Path | None = None, study: str | None = None,
         seed: int | None = None, timeout: float | None = None) -> StudyResult:
    """Run (or resume) the study until ``trials`` trials are complete or pruned."""
    optuna = optuna_module()
    raw, settings = read_settings(config, space)
    base = parse(raw)  # the untouched config must be valid before any trial runs
    if isinstance(base, RLConfig):  # trials are pruned on per-epoch validation metrics
        raise ConfigError("tuning prunes trials on the validation metric of each epoch; a "
                          "reinforcement-learning config has no epochs to report")
    name = study or f"{base.name}-tune"
    out = Path(output) if output else Path("runs") / name
    n = int(trials or settings.get("trials") or 20)
    sampler = optuna.samplers.TPESampler(seed=base.seed if seed is None else seed,
                                         n_startup_trials=min(10, max(2, n // 3)))
    st = optuna.create_study(study_name=name, storage=storage_for(default_uri(), out),
                             sampler=sampler, pruner=_pruner(settings),
                             direction=direction_for(settings), load_if_exists=True)
    remaining = n - _finished(st)

    def enough(study: Any, _trial: Any) -> None:  # parallel workers share the count
        if _finished(study) >= n:
            study.stop()
    if remaining > 0:  # a failed trial (e.g. a diverging lr) is recorded; the study goes on
        st.optimize(_objective(raw, settings, out, name), n_trials=remaining,
                    timeout=timeout, catch=(LayerwiseError,), callbacks=[enough])
    return _summarise(st, out, name)


def _summarise(st: Any, out: Path, name: str) -> StudyResult:
    """study.json and best.yaml (the best trial's resolved config)."""
    from optuna.trial import TrialState

    done = st.get_trials(deepcopy=False)
    complete = [t for t in done if t.state == TrialState.COMPLETE]
    best = st.best_trial if complete else None
    best_yaml = None
    if best is not None:
        src = Path(best.user_attrs["run_dir"]) / "config.yaml"
        best_yaml = out / "best.yaml"
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, best_yaml)
    result = StudyResult(out, name, best.value if best else None,
                         dict(best.params) if best else {}, best_yaml, len(done),
                         sum(t.state == TrialState.PRUNED for t in done),
                         sum(t.state == TrialState.FAIL for t in done),
                         Path(best.user_attrs["run_dir"]) if best else None)
    summary = {"study": name, "direction": st.direction.name.lower(),
               "best_value": result.best_value, "best_params": result.best_params,
               "best_trial": best.number if best else None,
               "best_run": str(result.best_run) if result.best_run else None,
               "trials": result.trials,
               "pruned": result.pruned, "failed": result.failed,
               "history": [{"trial": t.number, "state": t.state.name.lower(),
                            "value": t.value, "params": t.params,
                            "epochs": len(t.intermediate_values)} for t in done]}
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "study.json", dumps_json(summary, indent=2))
    return result
