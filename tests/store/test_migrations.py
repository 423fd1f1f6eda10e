"""The Alembic migrations build exactly the schema the models describe (no drift), and run idempotently."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from ringfence.store.base import Base
from ringfence.store.db import Store, migrate


def test_models_and_migrations_agree(store: Store) -> None:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_migrating_again_changes_nothing(store: Store) -> None:
    before = store.audit.verify(store.engine)
    migrate(store.engine)
    assert store.audit.verify(store.engine) == before
