"""Opening the store: the engine, the schema migrations, the master key, and the audit log bound together.

Owns: SQLite's settings (WAL; `secure_delete` so deleted rows are overwritten; `BEGIN IMMEDIATE` for writes so
concurrent writers queue instead of failing; foreign keys), running Alembic to head, and the safety checks on the
master key (created only for a new store; a store whose keys were wrapped by another key refuses to open).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, func, make_url, select
from sqlalchemy.orm import Session as OrmSession

from ringfence.audit import AuditLog
from ringfence.policy import PolicyRules, load_rules
from ringfence.store.crypto import MasterKeyError, MasterKeySource, create_key_file, read_key_file
from ringfence.store.models import DataKey, Meta

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (pysqlite's own handling is unreliable)
        cursor = dbapi_conn.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            "foreign_keys=ON",
            "secure_delete=ON",
            "busy_timeout=30000",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # Writers declare themselves (Store.write): they take the write lock up front and queue on the busy
        # timeout, instead of failing on a lock upgrade. Everything else reads a snapshot and blocks nobody.
        mode = "IMMEDIATE" if conn.get_execution_options().get("write") else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _ensure_sqlite_dir(url: str) -> None:
    """Create the directory of a SQLite file, private to its owner, so the database is never world-readable."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        directory = Path(parsed.database).parent
        if not directory.exists():
            directory.mkdir(parents=True, mode=0o700)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.execution_options(write=True).begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def truncate_wal(engine: Engine) -> None:
    """Checkpoint and truncate SQLite's WAL, so page images of deleted rows do not linger in it."""
    if engine.dialect.name != "sqlite":
        return
    raw = engine.raw_connection()  # outside any transaction: a checkpoint cannot run inside one
    try:
        for attempt in range(50):
            cursor = raw.cursor()
            busy = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            cursor.close()
            if not busy:
                return
            time.sleep(0.002 * (attempt + 1))  # a reader holds an old snapshot; it ends in milliseconds
        raise RuntimeError("the SQLite WAL could not be truncated: a reader kept it busy for over 2 seconds")
    finally:
        raw.close()


@dataclass
class Store:
    """An open store: the engine, the policy rules, the master key and the audit log."""

    engine: Engine
    rules: PolicyRules
    master: MasterKeySource
    audit: AuditLog

    @contextmanager
    def write(self) -> Iterator[OrmSession]:
        """A write transaction (IMMEDIATE on SQLite); commits on success, rolls back on any error."""
        with OrmSession(self.engine.execution_options(write=True), expire_on_commit=False) as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[OrmSession]:
        with OrmSession(self.engine, expire_on_commit=False) as session:
            yield session


def open_store(
    url: str,
    key_file: Path,
    *,
    rules: PolicyRules | None = None,
    master: MasterKeySource | None = None,
    create: bool = True,
) -> Store:
    """Open (and migrate) the store. The master key file is created only when the store holds no keys yet."""
    _ensure_sqlite_dir(url)
    engine = make_engine(url)
    migrate(engine)
    with OrmSession(engine) as session:
        recorded = session.get(Meta, "master_key_id")
        wrapped = session.scalar(select(func.count()).select_from(DataKey))
    if master is None:
        if key_file.exists():
            master = read_key_file(key_file)
        elif recorded is not None or wrapped:
            raise MasterKeyError(
                f"master key file {key_file} is missing, but this store's data keys were wrapped by master key "
                f"{recorded.value if recorded else '?'}; restore that key file (a new key cannot read them)"
            )
        elif create:
            master = create_key_file(key_file)
        else:
            raise MasterKeyError(f"master key file {key_file} does not exist")
    if recorded is not None and recorded.value != master.key_id:
        raise MasterKeyError(
            f"wrong master key: this store was written with master key {recorded.value}, "
            f"but {key_file} holds key {master.key_id}"
        )
    if recorded is None:
        with OrmSession(engine.execution_options(write=True)) as session, session.begin():
            session.add(Meta(key="master_key_id", value=master.key_id))
    return Store(engine, rules or load_rules(), master, AuditLog(master.derive("audit-head")))
