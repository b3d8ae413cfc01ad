"""The tracking store's tables (SQLAlchemy Core): runs, their metrics and artifacts, and the
model registry (names, versions, aliases).

The schema changes only through a migration in ``tracking/migrations/versions`` (the store
upgrades a database to the newest one when it opens it); these tables describe the newest.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

STATUSES = ("running", "finished", "failed", "interrupted")

runs = Table(
    "runs", metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False, index=True),
    Column("kind", String(40), nullable=False),           # train, cv, tune, evaluate, ...
    Column("status", String(20), nullable=False, index=True),
    Column("path", Text),                                  # the run directory
    Column("config", JSON),
    Column("config_hash", String(64), index=True),
    Column("data_hash", String(64)),
    Column("seed", Integer),
    Column("environment", JSON),                           # versions, CPU kind, git commit
    Column("metrics", JSON),                               # the final metrics, as written
    Column("tags", JSON),
    Column("error", Text),
    Column("started_at", Float, nullable=False, index=True),  # seconds since the epoch
    Column("ended_at", Float),
    Column("duration_s", Float),
)

metrics = Table(
    "metrics", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(32), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("key", String(200), nullable=False),
    Column("step", Integer, nullable=False),               # epoch number (or RL step)
    Column("value", Float),                                # NULL: not finite
    UniqueConstraint("run_id", "key", "step", name="uq_metric_run_key_step"),
)
Index("ix_metrics_run", metrics.c.run_id)

artifacts = Table(
    "artifacts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(32), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("path", Text, nullable=False),                  # relative to the run directory
    Column("size", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    UniqueConstraint("run_id", "path", name="uq_artifact_run_path"),
)

model_versions = Table(
    "model_versions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("run_id", String(32), ForeignKey("runs.id", ondelete="SET NULL")),
    Column("path", Text, nullable=False),                  # the model directory
    Column("sha256", String(64), nullable=False),          # of the directory's files
    Column("description", Text),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("name", "version", name="uq_model_version"),
)

aliases = Table(
    "aliases", metadata,
    Column("name", String(200), primary_key=True),
    Column("alias", String(100), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
)
