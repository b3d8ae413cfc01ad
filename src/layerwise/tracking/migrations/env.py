"""Migration environment: the store hands over its open connection (inside the transaction
that holds the database's write lock), so concurrent openers migrate once. The version
table has its own name: a study's tables (the tuning library's, also migrated with
alembic) may share the database."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, render_as_batch=True,
                  version_table=context.config.attributes["version_table"])
with context.begin_transaction():
    context.run_migrations()
