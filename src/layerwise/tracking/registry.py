"""The model registry: named models, numbered versions, movable aliases.

``register`` records a run's model directory as the next version of a name, with the
sha256 of its files; ``set_alias`` points an alias (``production``, ``staging``) at a
version. :func:`resolve_model` turns ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or
``models:/NAME`` (the newest version) into the model directory, after checking its files
are still the ones registered; any other path is returned as it is. Every command that
takes a model directory calls it.
"""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path
from typing import Any

from layerwise.errors import ArtifactError, ConfigError
from layerwise.tracking.store import Store, open_store

SCHEME = "models:/"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")
ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,99}$")


def _check_name(name: str, what: str = "model name") -> None:
    pattern = NAME if what == "model name" else ALIAS
    if not pattern.match(name):
        raise ConfigError(f"{what} {name!r}: use letters, digits, '_', '-'"
                          + (" and '.'" if what == "model name" else "")
                          + " (starting with a letter or digit)")


def tree_sha256(folder: Path) -> str:
    """One digest of a folder's files: their relative paths and contents, in order."""
    h = hashlib.sha256()
    for p in sorted(x for x in folder.rglob("*") if x.is_file()):
        h.update(p.relative_to(folder).as_posix().encode() + b"\0")
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()


def _model_dir(run: dict[str, Any]) -> Path:
    if not run.get("path"):
        raise ArtifactError(f"run {run['id'][:8]} ({run['name']}) has no run directory")
    model = Path(run["path"]) / "model"
    if not (model / "layerwise.json").is_file():
        raise ArtifactError(f"run {run['id'][:8]} ({run['name']}): no model in {model} (did "
                            "the run finish?)")
    return model


def _source(store: Store, run_ref: str) -> tuple[str | None, Path]:
    """(run id or None, model folder) of a run reference, or of a folder given by path (a
    run folder or a model folder; linked to its run when the store has one for it)."""
    p = Path(run_ref)
    if not p.is_dir():
        run = store.run(run_ref)
        return str(run["id"]), _model_dir(run)
    model = p if (p / "layerwise.json").is_file() else p / "model"
    if not (model / "layerwise.json").is_file():
        raise ArtifactError(f"{p}: no model here (expected layerwise.json in it or in "
                            f"{p / 'model'})")
    found = store.runs(path=str(model.parent.absolute()), limit=1)
    return (str(found[0]["id"]) if found else None), model.absolute()


def register(store: Store, run_ref: str, name: str, description: str | None = None
             ) -> int:
    """Register the model of run ``run_ref`` (a run id, id prefix or name; or a run or model
    folder) as the next version of ``name``; returns the version."""
    _check_name(name)
    run_id, model = _source(store, run_ref)
    digest = tree_sha256(model)
    mv = store.t.model_versions
    from sqlalchemy import func, select

    def write(c: Any) -> int:
        newest = c.execute(select(func.max(mv.c.version)).where(mv.c.name == name)).scalar()
        version = int(newest or 0) + 1
        c.execute(mv.insert().values(name=name, version=version, run_id=run_id,
                                     path=str(model), sha256=digest,
                                     description=description, created_at=time.time()))
        return version
    return _retry_unique(lambda: store._write(write))


def _retry_unique(fn: Any, tries: int = 5) -> Any:
    """Two registrations of one name at once: the loser of the version number tries
    again with the next one."""
    from sqlalchemy.exc import IntegrityError

    for attempt in range(tries):
        try:
            return fn()
        except IntegrityError:
            if attempt == tries - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    return None  # pragma: no cover


def versions(store: Store, name: str | None = None) -> list[dict[str, Any]]:
    """Registered versions (of ``name``, or all), each with its aliases."""
    mv, al = store.t.model_versions, store.t.aliases
    q = mv.select().order_by(mv.c.name, mv.c.version)
    if name:
        q = q.where(mv.c.name == name)
    rows = store._read(lambda c: [dict(r._mapping) for r in c.execute(q)])
    tags = store._read(lambda c: [dict(r._mapping) for r in c.execute(al.select())])
    for r in rows:
        r["aliases"] = sorted(t["alias"] for t in tags
                              if t["name"] == r["name"] and t["version"] == r["version"])
    return rows


def _version(store: Store, name: str, version: int) -> dict[str, Any]:
    found = [v for v in versions(store, name) if v["version"] == version]
    if not found:
        known = [v["version"] for v in versions(store, name)]
        raise ConfigError(f"model {name!r} has no version {version}" + (
            f"; versions: {known}" if known else " (the name is not registered)"))
    return found[0]


def set_alias(store: Store, name: str, alias: str, version: int) -> None:
    """Point ``name@alias`` at ``version`` (moving it if it pointed elsewhere)."""
    _check_name(alias, "alias")
    _version(store, name, version)
    al = store.t.aliases

    def write(c: Any) -> None:
        c.execute(al.delete().where(al.c.name == name, al.c.alias == alias))
        c.execute(al.insert().values(name=name, alias=alias, version=version,
                                     updated_at=time.time()))
    store._write(write)


def remove_alias(store: Store, name: str, alias: str) -> None:
    al = store.t.aliases
    store._write(lambda c: c.execute(al.delete().where(al.c.name == name,
                                                       al.c.alias == alias)))


def parse_uri(uri: str) -> tuple[str, str | None, int | None]:
    """``models:/NAME@ALIAS`` → (NAME, ALIAS, None); ``models:/NAME/3`` → (NAME, None, 3);
    ``models:/NAME`` → (NAME, None, None)."""
    rest = uri.removeprefix(SCHEME).strip("/")
    name, at, alias = rest.partition("@")
    version: int | None = None
    if not at and "/" in rest:
        name, _, v = rest.partition("/")
        if not v.isdigit():
            raise ConfigError(f"{uri}: expected models:/NAME/VERSION with a version number")
        version = int(v)
    if not name or (at and not alias):
        raise ConfigError(f"{uri}: expected models:/NAME@ALIAS, models:/NAME/VERSION or "
                          "models:/NAME")
    return name, alias or None, version


def lookup(store: Store, uri: str) -> dict[str, Any]:
    """The registered version a ``models:/`` URI names."""
    name, alias, version = parse_uri(uri)
    if alias:
        al = store.t.aliases
        row = store._read(lambda c: c.execute(al.select().where(
            al.c.name == name, al.c.alias == alias)).first())
        if row is None:
            have = sorted({a for v in versions(store, name) for a in v["aliases"]})
            raise ConfigError(f"{uri}: model {name!r} has no alias {alias!r}"
                              + (f"; aliases: {have}" if have else ""))
        version = row.version
    if version is None:
        found = versions(store, name)
        if not found:
            raise ConfigError(f"{uri}: no model named {name!r} is registered")
        version = found[-1]["version"]
    return _version(store, name, int(version))


def resolve_model(ref: str | Path) -> Path:
    """The model directory ``ref`` names: a ``models:/`` URI looked up in the registry
    (its files checked against the registered digest), any other path as it is."""
    text = str(ref)
    if not text.startswith(SCHEME.rstrip("/")):
        return Path(ref)
    found = lookup(open_store(), text)
    path = Path(found["path"])
    if not (path / "layerwise.json").is_file():
        raise ArtifactError(f"{text}: version {found['version']} lives in {path}, which no "
                            "longer holds a model")
    if tree_sha256(path) != found["sha256"]:
        raise ArtifactError(f"{text}: the files in {path} changed since version "
                            f"{found['version']} was registered (the run was overwritten?); "
                            "register the model again")
    return path
