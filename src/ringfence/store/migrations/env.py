"""Alembic environment: migrations run on the connection ringfence hands over (store.db.migrate)."""

from __future__ import annotations

from alembic import context

from ringfence.store import models
from ringfence.store.base import Base

assert models  # the import registers every table on Base.metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through ringfence (ringfence db upgrade), which supplies the connection")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
