"""Stored environments: create, replace, find, list and delete an account's environments, each audited.

Owns: persistence only. Settings arrive validated (ringfence.sessions.environments) as a JSON object; the audit
record names the environment and its network modes, never the values of its extra environment variables.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ringfence.audit import AuditEntry
from ringfence.policy.calendar import format_time
from ringfence.store.db import Store
from ringfence.store.errors import Conflict, NotFound
from ringfence.store.ids import new_id
from ringfence.store.models import Environment


def _summary(settings: dict[str, Any]) -> dict[str, object]:
    return {
        "network": settings.get("network"),
        "setup_network": settings.get("setup_network") if settings.get("setup") else None,
        "telemetry": settings.get("telemetry"),
        "env_names": sorted(settings.get("env", {})),
    }


def _audit(store: Store, db: Any, kind: str, row: Environment, at: datetime, actor: str, **data: object) -> None:
    fields = {"account": row.account_id, "name": row.name, "actor": actor, **data}
    store.audit.append(db.connection(), AuditEntry(kind, row.id, format_time(at), fields))


def create_environment(
    store: Store, account_id: str, name: str, settings: dict[str, Any], at: datetime, *, actor: str
) -> Environment:
    row = Environment(
        id=new_id("env"), account_id=account_id, name=name, settings=settings, created_at=at, updated_at=at
    )
    try:
        with store.write() as db:
            if db.scalar(select(Environment.id).where(Environment.account_id == account_id, Environment.name == name)):
                raise Conflict(f"environment {name!r} already exists; replace it with PUT")
            db.add(row)
            db.flush()
            _audit(store, db, "environment.created", row, at, actor, **_summary(settings))
    except IntegrityError:  # a concurrent create of the same name
        raise Conflict(f"environment {name!r} already exists; replace it with PUT") from None
    return row


def _locate(db: Any, account_id: str, name_or_id: str) -> Environment:
    row = db.scalar(
        select(Environment).where(
            Environment.account_id == account_id, (Environment.name == name_or_id) | (Environment.id == name_or_id)
        )
    )
    if row is None:
        raise NotFound(f"no environment {name_or_id!r} in this account")
    return row  # type: ignore[no-any-return]


def find_environment(store: Store, account_id: str, name_or_id: str) -> Environment:
    with store.read() as db:
        return _locate(db, account_id, name_or_id)


def list_environments(store: Store, account_id: str) -> list[Environment]:
    with store.read() as db:
        return list(
            db.scalars(select(Environment).where(Environment.account_id == account_id).order_by(Environment.name))
        )


def replace_environment(
    store: Store, account_id: str, name_or_id: str, settings: dict[str, Any], at: datetime, *, actor: str
) -> Environment:
    """New settings for the sessions started (or resumed) from now on; running sessions keep theirs."""
    with store.write() as db:
        row = _locate(db, account_id, name_or_id)
        row.settings = settings
        row.updated_at = at
        _audit(store, db, "environment.updated", row, at, actor, **_summary(settings))
    return row


def delete_environment(store: Store, account_id: str, name_or_id: str, at: datetime, *, actor: str) -> None:
    """Sessions keep the id of the environment they ran in; resuming one whose environment is gone is refused."""
    with store.write() as db:
        row = _locate(db, account_id, name_or_id)
        db.delete(row)
        _audit(store, db, "environment.deleted", row, at, actor)
