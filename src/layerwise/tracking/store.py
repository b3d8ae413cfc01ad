"""The tracking store: every run, its per-epoch metrics, final metrics and artifacts, in one
SQL database.

SQLite by default (``runs/layerwise.db``), or any server database by URL
(``LAYERWISE_TRACKING_URI=postgresql+psycopg://user@host/db``). On SQLite several
processes write at once safely: the database is in WAL mode (readers never wait for the
writer), every write transaction starts with ``BEGIN IMMEDIATE`` (it takes the write lock
up front, so two writers never deadlock upgrading a read lock), waits up to
:data:`BUSY_TIMEOUT_MS` for the lock, and is retried with jittered backoff if the database
is still busy. The schema is upgraded to the newest migration when the store opens it.
"""

from __future__ import annotations

import math
import os
import random
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from layerwise.errors import ConfigError, MissingDependencyError

HEAD = "0001"  # the newest migration (tests check it against migrations/versions)
BUSY_TIMEOUT_MS = 10_000  # a lock held longer than this by another process is unusual
RETRIES = 6  # worst case about a minute of waiting, once, before the run goes untracked
MIGRATION_LOCK = 1_500_715  # the PostgreSQL advisory lock key held while migrating
VERSION_TABLE = "layerwise_schema_version"  # alembic's; not "alembic_version", which
# the tuning library's own tables use in the same database
DEFAULT_PATH = Path("runs") / "layerwise.db"
LEGACY_VERSION_TABLE = "alembic_version"  # the version table's name before VERSION_TABLE
RECORD_KINDS = ("evaluate", "monitor")  # records of work on a model, not runs that made one
T = TypeVar("T")


def default_uri() -> str:
    """``LAYERWISE_TRACKING_URI``, else SQLite at ``runs/layerwise.db`` (absolute)."""
    uri = os.environ.get("LAYERWISE_TRACKING_URI", "").strip()
    return uri or f"sqlite:///{DEFAULT_PATH.absolute()}"


def _sqlalchemy() -> Any:
    try:
        import sqlalchemy
    except ImportError:
        raise MissingDependencyError("run tracking needs SQLAlchemy and alembic: pip install "
                                     "'layerwise[track]'") from None
    return sqlalchemy


def _sqlite_engine(uri: str) -> Any:
    """An engine whose connections wait for the lock and write in WAL mode."""
    sa = _sqlalchemy()
    path = sa.engine.make_url(uri).database
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(uri, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # the driver opens no transaction of its own
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; fast commits
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def make_engine(uri: str) -> Any:
    """The engine for ``uri``: SQLite set up for concurrent writers, others as given (a
    server that does not answer fails within seconds, not minutes)."""
    sa = _sqlalchemy()
    try:
        url = sa.engine.make_url(uri)
    except sa.exc.ArgumentError:
        raise ConfigError(f"LAYERWISE_TRACKING_URI: {uri!r} is not a database URL (e.g. "
                          "sqlite:///runs/layerwise.db or postgresql+psycopg://host/db)"
                          ) from None
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(uri)
    args = {"connect_timeout": 5} if url.get_backend_name() == "postgresql" else {}
    try:
        return sa.create_engine(uri, connect_args=args, pool_pre_ping=True)
    except ImportError as e:
        raise MissingDependencyError(f"the tracking database {url.drivername} needs its "
                                     f"driver: {e}") from None


def _busy(e: Exception) -> bool:
    text = str(e).lower()
    return "database is locked" in text or "database is busy" in text or \
        "deadlock detected" in text or "could not serialize" in text


def retrying(fn: Callable[[], T]) -> T:
    """Run ``fn`` (one transaction), again after a jittered backoff while the database
    reports it is locked or busy."""
    sa = _sqlalchemy()
    for attempt in range(RETRIES):
        try:
            return fn()
        except sa.exc.OperationalError as e:
            if not _busy(e) or attempt == RETRIES - 1:
                raise
            time.sleep(min(2.0, 0.05 * 2 ** attempt) * (0.5 + random.random()))
    raise RuntimeError("unreachable")  # pragma: no cover


def migrate(engine: Any) -> None:
    """Upgrade the schema to :data:`HEAD` (alembic), in one write transaction: of several
    processes opening a new database at once, one creates it and the others see it made."""
    sa = _sqlalchemy()
    with engine.connect() as conn:
        if sa.inspect(conn).has_table(VERSION_TABLE):
            current = conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").scalar()
            if current == HEAD:
                return
        conn.rollback()
    from alembic import command
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as conn:  # SQLite: BEGIN IMMEDIATE holds the write lock
        if engine.dialect.name == "postgresql":  # one migrator at a time, the rest wait
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        cfg.attributes["connection"] = conn
        cfg.attributes["version_table"] = VERSION_TABLE
        legacy = _legacy_revision(conn)
        if legacy is not None:  # record where it stands under today's name, then go on
            command.stamp(cfg, legacy)
        command.upgrade(cfg, "head")


def _legacy_revision(conn: Any) -> str | None:
    """The revision of a store made before its version table had its own name: our
    tables, no :data:`VERSION_TABLE`, and one of our revisions (``0001``…) in the
    default ``alembic_version`` table. Upgrading it as if it were empty would try to
    create tables that exist."""
    import re

    sa = _sqlalchemy()
    inspect = sa.inspect(conn)
    if inspect.has_table(VERSION_TABLE) or not inspect.has_table("runs") or \
            not inspect.has_table(LEGACY_VERSION_TABLE):
        return None
    rev = conn.exec_driver_sql(f"SELECT version_num FROM {LEGACY_VERSION_TABLE}").scalar()
    return str(rev) if rev is not None and re.fullmatch(r"\d{4}", str(rev)) else None


def _finite(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def scalars(row: dict[str, Any]) -> dict[str, float | None]:
    """The numeric entries of a history row (bools and strings left out)."""
    import numbers

    return {k: _finite(v) for k, v in row.items()
            if isinstance(v, numbers.Real) and not isinstance(v, bool)}


class Store:
    """One tracking database; every method is one short transaction, retried while busy."""

    def __init__(self, uri: str | None = None) -> None:
        self.uri = uri or default_uri()
        self.engine = make_engine(self.uri)
        from layerwise.tracking import schema

        self.t = schema
        retrying(lambda: migrate(self.engine))

    def _write(self, fn: Callable[[Any], T]) -> T:
        def once() -> T:
            with self.engine.begin() as conn:
                return fn(conn)
        return retrying(once)

    def _read(self, fn: Callable[[Any], T]) -> T:
        def once() -> T:
            with self.engine.connect() as conn:
                return fn(conn)
        return retrying(once)

    def _insert_ignoring(self, table: Any) -> Any:
        """An INSERT that skips rows already present (same unique key)."""
        name = self.engine.dialect.name
        if name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        elif name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            return table.insert().prefix_with("IGNORE")  # MySQL
        return insert(table).on_conflict_do_nothing()

    # ------------------------------------------------------------------ writing
    def create_run(self, **fields: Any) -> str:
        """A new run row (status ``running``); returns its id."""
        row = {"id": uuid.uuid4().hex, "status": "running", "kind": "train",
               "started_at": time.time(), **fields}
        self._write(lambda c: c.execute(self.t.runs.insert().values(**row)))
        return str(row["id"])

    def update_run(self, run_id: str, **fields: Any) -> None:
        runs = self.t.runs
        self._write(lambda c: c.execute(runs.update().where(runs.c.id == run_id)
                                        .values(**fields)))

    def log_metrics(self, run_id: str, rows: Iterable[tuple[str, int, float | None]]) -> int:
        """Add (key, step, value) rows; a row already stored for (key, step) is kept.
        Returns the rows given."""
        values = [{"run_id": run_id, "key": k, "step": int(s), "value": v} for k, s, v in rows]
        if values:
            self._write(lambda c: c.execute(self._insert_ignoring(self.t.metrics), values))
        return len(values)

    def set_artifacts(self, run_id: str, files: list[tuple[str, int, str]]) -> None:
        """Replace the run's artifact list with (relative path, size, sha256) rows."""
        art = self.t.artifacts

        def write(c: Any) -> None:
            c.execute(art.delete().where(art.c.run_id == run_id))
            if files:
                c.execute(art.insert(), [{"run_id": run_id, "path": p, "size": n,
                                          "sha256": h} for p, n, h in files])
        self._write(write)

    def delete_run(self, run_id: str) -> None:
        """Remove a run with its metrics and artifacts (registered versions keep their
        model directory and lose only the link to the run)."""
        t = self.t

        def delete(c: Any) -> None:
            for table in (t.metrics, t.artifacts):
                c.execute(table.delete().where(table.c.run_id == run_id))
            c.execute(t.model_versions.update().where(t.model_versions.c.run_id == run_id)
                      .values(run_id=None))
            c.execute(t.runs.delete().where(t.runs.c.id == run_id))
        self._write(delete)

    # ------------------------------------------------------------------ reading
    def runs(self, *, status: str | None = None, kind: str | None = None,
             name: str | None = None, path: str | None = None, limit: int | None = None
             ) -> list[dict[str, Any]]:
        """Runs, newest first; ``name`` may hold ``*`` wildcards."""
        r = self.t.runs
        q = r.select().order_by(r.c.started_at.desc())
        if status:
            q = q.where(r.c.status == status)
        if kind:
            q = q.where(r.c.kind == kind)
        if name:
            q = q.where(r.c.name.like(name.replace("*", "%")))
        if path:
            q = q.where(r.c.path == path)
        if limit:
            q = q.limit(limit)
        return self._read(lambda c: [dict(row._mapping) for row in c.execute(q)])

    def run(self, ref: str) -> dict[str, Any]:
        """One run by id, a unique id prefix (4+ characters), or name (the newest run of
        that name, a training run before an evaluation's or a drift check's record); a
        ConfigError naming
        ``ref`` when none or several match."""
        sa = _sqlalchemy()
        r = self.t.runs

        def find(c: Any) -> list[Any]:
            exact = c.execute(r.select().where(r.c.id == ref)).fetchall()
            if exact:
                return exact
            if len(ref) >= 4:
                by_prefix = c.execute(r.select().where(r.c.id.like(f"{ref}%"))).fetchall()
                if by_prefix:
                    return by_prefix
            # records of work on a model (evaluate, monitor) come after the runs that
            # made one
            trained_first = sa.case((r.c.kind.in_(RECORD_KINDS), 1), else_=0)
            return c.execute(r.select().where(r.c.name == ref)
                             .order_by(trained_first, r.c.started_at.desc()).limit(1)
                             ).fetchall()
        rows = self._read(find)
        if not rows:
            raise ConfigError(f"no run {ref!r} in the tracking store {self.uri}")
        if len(rows) > 1:
            raise ConfigError(f"run id prefix {ref!r} matches {len(rows)} runs; give more "
                              "characters")
        return dict(rows[0]._mapping)

    def metric_rows(self, run_id: str) -> list[tuple[str, int, float | None]]:
        """The run's (key, step, value) rows, by key then step."""
        m = self.t.metrics
        q = (m.select().where(m.c.run_id == run_id).order_by(m.c.key, m.c.step))
        return self._read(lambda c: [(x.key, x.step, x.value) for x in c.execute(q)])

    def artifacts(self, run_id: str) -> list[dict[str, Any]]:
        a = self.t.artifacts
        q = a.select().where(a.c.run_id == run_id).order_by(a.c.path)
        return self._read(lambda c: [dict(x._mapping) for x in c.execute(q)])

    def count_metrics(self, run_id: str | None = None) -> int:
        sa = _sqlalchemy()
        m = self.t.metrics
        q = sa.select(sa.func.count()).select_from(m)
        if run_id:
            q = q.where(m.c.run_id == run_id)
        return int(self._read(lambda c: c.execute(q).scalar()))

    def close(self) -> None:
        self.engine.dispose()


_OPEN: dict[str, Store] = {}


def open_store(uri: str | None = None) -> Store:
    """The process's store for ``uri`` (default :func:`default_uri`), opened once."""
    uri = uri or default_uri()
    if uri not in _OPEN:
        _OPEN[uri] = Store(uri)
    return _OPEN[uri]


def _forget_after_fork() -> None:
    """A forked child must not share its parent's database connections."""
    for s in _OPEN.values():
        s.engine.dispose(close=False)
    _OPEN.clear()


os.register_at_fork(after_in_child=_forget_after_fork)
