"""Recording runs into the tracking store, on behalf of the run module (layerwise.runs).

Tracking never breaks a run: the first store error is warned about once per process, the
run it happened in goes on untracked, and training continues. ``LAYERWISE_TRACKING=off``
turns recording off. A run is known by its directory: :func:`begin` opens a record,
:func:`log_epoch` / :func:`log_history` / :func:`log_final` add to it, :func:`end` closes
it with its status, duration and artifacts (each file's sha256).

Code that starts runs for a purpose (a tuning trial, a cross-validation fold) names it
with :func:`labelled`: the runs begun inside carry its kind and tags.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from layerwise.tracking.store import Store, open_store, scalars

OFF = ("off", "0", "false", "no")
SKIPPED_DIRS = ("checkpoints",)  # resume state, rewritten every epoch: not an artifact
_warned = False


def enabled() -> bool:
    """Whether runs are recorded (``LAYERWISE_TRACKING``, on unless off/0/false/no)."""
    return os.environ.get("LAYERWISE_TRACKING", "on").strip().lower() not in OFF


@dataclass
class Active:
    """A run being recorded."""

    store: Store
    run_id: str
    started: float
    final: bool = False  # whether final metrics arrived (the run got to its end)
    logged: set[tuple[str, int]] = field(default_factory=set)


_ACTIVE: dict[Path, Active] = {}
_LABEL: dict[str, Any] = {}


def _key(path: str | Path) -> Path:
    return Path(path).absolute()


def warn_once(e: BaseException) -> None:
    """The one warning of a process whose store failed."""
    global _warned
    if not _warned:
        _warned = True
        msg = f"run tracking failed, the run goes on untracked: {type(e).__name__}: {e}"
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
        print(f"warning: {msg}", file=sys.stderr)


@contextlib.contextmanager
def labelled(kind: str, **tags: Any) -> Iterator[None]:
    """Runs begun inside get ``kind`` (e.g. ``tune``) and ``tags`` (e.g. study, trial)."""
    before = dict(_LABEL)
    _LABEL.update(kind=kind, tags={**before.get("tags", {}), **tags})
    try:
        yield
    finally:
        _LABEL.clear()
        _LABEL.update(before)


def _resumed(store: Store, path: Path) -> str | None:
    """The newest record of the run in ``path``: a resume continues it (also a finished
    one given more epochs: the new epochs' rows join the old)."""
    found = store.runs(path=str(path), limit=1)
    return str(found[0]["id"]) if found else None


def begin(path: str | Path, cfg: Any, *, resume: bool = False,
          data_hash: str | None = None, environment: dict[str, Any] | None = None) -> None:
    """Open the record of the run in ``path`` (config, hashes, seed, environment)."""
    if not enabled():
        return
    key = _key(path)
    try:
        from layerwise.config import config_hash

        store = open_store()
        fields = {"status": "running", "config": cfg.model_dump(mode="json"),
                  "config_hash": config_hash(cfg), "data_hash": data_hash,
                  "seed": getattr(cfg, "seed", None), "environment": environment or {},
                  "ended_at": None, "duration_s": None, "error": None}
        run_id = _resumed(store, key) if resume else None
        if run_id:
            store.update_run(run_id, **fields)
        else:
            run_id = store.create_run(name=cfg.name, path=str(key), kind=_LABEL.get(
                "kind", "train"), tags=_LABEL.get("tags", {}), **fields)
        _ACTIVE[key] = Active(store, run_id, time.time())
    except Exception as e:  # tracking must never stop a run
        warn_once(e)


def active_id(path: str | Path) -> str | None:
    """The store id of the run being recorded in ``path`` (None when untracked)."""
    a = _ACTIVE.get(_key(path))
    return a.run_id if a else None


def _guarded(path: str | Path, what: Any) -> None:
    a = _ACTIVE.get(_key(path))
    if a is None:
        return
    try:
        what(a)
    except Exception as e:
        _ACTIVE.pop(_key(path), None)  # this run goes on untracked
        warn_once(e)


def _log_rows(a: Active, rows: list[tuple[int, dict[str, Any]]]) -> None:
    out = [(k, step, v) for step, row in rows for k, v in scalars(row).items()
           if (k, step) not in a.logged and k not in ("epoch", "step")]
    a.store.log_metrics(a.run_id, out)
    a.logged.update((k, s) for k, s, _ in out)


def log_epoch(path: str | Path, step: int, row: dict[str, Any]) -> None:
    """One history row (an epoch's losses, metrics, learning rate) at ``step``."""
    _guarded(path, lambda a: _log_rows(a, [(step, row)]))


def _step(i: int, row: dict[str, Any]) -> int:
    """A history row's step: its epoch (supervised) or environment step (agents)."""
    for k in ("epoch", "step"):
        if isinstance(row.get(k), int | float):
            return int(row[k])
    return i + 1


def log_history(path: str | Path, history: list[dict[str, Any]]) -> None:
    """The whole history (rows not already logged epoch by epoch are added)."""
    _guarded(path, lambda a: _log_rows(a, [(_step(i, r), r) for i, r in enumerate(history)]))


def log_final(path: str | Path, metrics: dict[str, Any]) -> None:
    """The final metrics (metrics.json), stored whole."""
    def write(a: Active) -> None:
        from layerwise.files import dumps_json

        a.store.update_run(a.run_id, metrics=json.loads(dumps_json(metrics)))
        a.final = True
    _guarded(path, write)


def add_tags(path: str | Path, **tags: Any) -> None:
    """Add tags to the record of the run in ``path`` (e.g. a tuning trial's ``pruned``)."""
    def write(a: Active) -> None:
        before = a.store.run(a.run_id).get("tags") or {}
        a.store.update_run(a.run_id, tags={**before, **tags})
    _guarded(path, write)


def record(kind: str, name: str, metrics: dict[str, Any], *, path: str | Path | None = None,
           config: dict[str, Any] | None = None, **tags: Any) -> str | None:
    """One finished record for work that is not a training run (``evaluate``, ...):
    its metrics, the model folder it read, tags; returns the id (None when untracked)."""
    if not enabled():
        return None
    try:
        from layerwise.files import dumps_json

        store = open_store()
        now = time.time()
        return store.create_run(name=name, kind=kind, status="finished", started_at=now,
                                ended_at=now, duration_s=0.0, config=config,
                                path=str(Path(path).absolute()) if path else None,
                                metrics=json.loads(dumps_json(metrics)), tags=tags)
    except Exception as e:  # recording never fails the command
        warn_once(e)
        return None


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def artifact_files(root: Path) -> list[tuple[str, int, str]]:
    """(relative path, size, sha256) of the files of a run directory, checkpoints left out."""
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if p.is_file() and rel.parts[0] not in SKIPPED_DIRS:
            out.append((rel.as_posix(), p.stat().st_size, sha256(p)))
    return out


def end(path: str | Path, status: str | None = None, error: str | None = None) -> None:
    """Close the record: ``status`` (default: finished if final metrics arrived, else
    interrupted), the error, duration and artifacts."""
    key = _key(path)

    def close(a: Active) -> None:
        now = time.time()
        a.store.set_artifacts(a.run_id, artifact_files(key) if key.is_dir() else [])
        a.store.update_run(a.run_id, status=status or ("finished" if a.final
                                                       else "interrupted"),
                           error=error, ended_at=now, duration_s=round(now - a.started, 3))
    _guarded(key, close)
    _ACTIVE.pop(key, None)
