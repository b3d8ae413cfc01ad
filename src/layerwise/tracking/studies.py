"""Tuning studies in the tracking database: where Optuna keeps them, and what they found.

A study lives in the tracking server's own database, or, beside a SQLite store, in an
append-only journal file (file locks: parallel workers never meet a locked database).
:func:`importances` reads a study back for the dashboard: which parameters moved the
objective, by Optuna's default evaluator (fANOVA over the finished trials).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from layerwise.errors import MissingDependencyError


def optuna_module() -> Any:
    """Optuna, quiet, or a clear error naming the extra that installs it."""
    try:
        import optuna
    except ImportError:
        raise MissingDependencyError("tuning needs optuna: pip install 'layerwise[track]'"
                                     ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def storage_for(uri: str, folder: Path | None) -> Any:
    """Where studies live: the tracking server database itself, or for SQLite a journal
    file beside it (``folder`` holds it for an in-memory store)."""
    optuna = optuna_module()
    if not uri.startswith("sqlite"):  # a heartbeat: a killed worker's trial is failed later
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(uri, heartbeat_interval=60, grace_period=180)
    from sqlalchemy.engine import make_url

    db = make_url(uri).database
    if db and db != ":memory:":
        path = Path(db).with_suffix(".studies.journal")
    elif folder is not None:
        path = folder / "studies.journal"
    else:
        raise FileNotFoundError("an in-memory store keeps no studies")
    path.parent.mkdir(parents=True, exist_ok=True)
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def importances(uri: str, study: str) -> dict[str, float] | str:
    """Each parameter's share of the objective's variance over the study's finished
    trials (summing to 1), or why it cannot be said yet."""
    optuna = optuna_module()
    try:
        loaded = optuna.load_study(study_name=study, storage=storage_for(uri, None))
    except (KeyError, FileNotFoundError):
        return "the study is not in this store's tuning storage"
    done = [t for t in loaded.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(done) < 2:
        return f"needs 2 finished trials; {len(done)} so far"
    try:
        found = optuna.importance.get_param_importances(loaded)
    except (RuntimeError, ValueError) as e:  # e.g. one parameter value in every trial
        return f"not computable yet: {e}"
    return {k: float(v) for k, v in found.items()}
