"""The policy ledger: every consent, DPP, ZDR, activity, delete, feedback and rating event, per account, in order.

Owns: appending an event with the account's next sequence number, replaying the account's whole history through
ringfence.policy (the same `replay` that `policy explain` uses, so a refused event is refused with the same words),
writing the resulting retention decisions onto the session rows, and one audit record per event, all in the
caller's transaction. If the policy refuses, nothing is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session as OrmSession

from ringfence.audit import AuditEntry
from ringfence.policy import Account, Event, EventType, Explanation, Replay, evaluate, format_time, replay
from ringfence.store.db import Store
from ringfence.store.errors import NotFound
from ringfence.store.models import Organization, PolicyEvent, Session, User


def policy_account(db: OrmSession, account_id: str, *, lock: bool = False) -> Account:
    """The policy's view of an account: an organization, or a consumer user. `lock` holds the account's row for
    the transaction, so concurrent events of one account take their sequence numbers one after another."""
    org = db.get(Organization, account_id, with_for_update=lock)
    if org is not None:
        return Account(org.id, org.plan)
    user = db.get(User, account_id, with_for_update=lock)
    if user is None or user.plan is None:
        raise NotFound(f"no policy account {account_id!r}")
    return Account(user.id, user.plan)


def load_events(db: OrmSession, account_id: str) -> list[Event]:
    rows = db.execute(select(PolicyEvent).where(PolicyEvent.account_id == account_id).order_by(PolicyEvent.seq))
    return [
        Event(e.seq, e.at, e.account_id, EventType(e.type), e.session_id, e.value, e.zdr_key)  # type: ignore[arg-type]
        for e in rows.scalars()
    ]


def replay_account(store: Store, db: OrmSession, account_id: str) -> Replay:
    return replay(store.rules, [policy_account(db, account_id)], load_events(db, account_id))


def decisions(store: Store, db: OrmSession, account_id: str, at: datetime) -> Explanation:
    """The server's decisions for every session of an account at `at`: its stored ledger through `evaluate`."""
    return evaluate(store.rules, [policy_account(db, account_id)], load_events(db, account_id), at)


def record(
    store: Store,
    db: OrmSession,
    account_id: str,
    kind: EventType,
    at: datetime,
    *,
    actor: str,
    session_id: str | None = None,
    value: bool | int | str | None = None,
    zdr_key: bool = False,
    audit: Mapping[str, Any] | None = None,
) -> Replay:
    """Append one event, re-decide the account, materialize its sessions' deadlines, audit. Raises PolicyError."""
    account = policy_account(db, account_id, lock=True)
    events = load_events(db, account_id)
    event = Event((events[-1].seq if events else 0) + 1, at, account_id, kind, session_id, value, zdr_key)
    history = replay(store.rules, [account], [*events, event])
    db.add(
        PolicyEvent(
            account_id=account_id,
            seq=event.seq,
            at=at,
            type=kind.value,
            session_id=session_id,
            value=value,
            zdr_key=zdr_key,
            actor=actor,
            policy=store.rules.stamp,
        )
    )
    touched = None if kind in (EventType.CONSENT, EventType.DPP) else {session_id}
    decisions = _materialize(db, history, account_id, touched)
    data: dict[str, Any] = {"account": account_id, "event": kind.value, "seq": event.seq, "actor": actor}
    if isinstance(value, bool | int) or value == "dismiss":
        data["value"] = value
    if session_id is not None:
        data["session"] = session_id
    if zdr_key:
        data["zdr_key"] = True
    if decisions:
        data["retention"] = decisions
    data.update(audit or {})
    store.audit.append(
        db.connection(),
        AuditEntry(f"policy.{kind.value}", session_id or account_id, format_time(at), data, store.rules.stamp),
    )
    return history


def _materialize(
    db: OrmSession, history: Replay, account_id: str, touched: set[str | None] | None
) -> dict[str, list[str | None]]:
    """Write each touched session's retention rule and deadline; returns the changed ones (for the audit record)."""
    changed: dict[str, list[str | None]] = {}
    replayed_sessions = [s for s in history.accounts[account_id].sessions if touched is None or s.id in touched]
    if not replayed_sessions:
        return changed
    # One query for every touched row: an opt-out touches all of an account's sessions.
    rows = {r.id: r for r in db.scalars(select(Session).where(Session.id.in_([s.id for s in replayed_sessions])))}
    for replayed in replayed_sessions:
        row = rows.get(replayed.id)
        if row is None or row.state != "active":
            continue
        if replayed.deleted_at is not None:
            continue  # the caller shreds and marks the row
        if (row.retention_rule, row.delete_after, row.zdr) != (replayed.rule, replayed.delete_after, replayed.zdr):
            row.retention_rule, row.delete_after, row.zdr = replayed.rule, replayed.delete_after, replayed.zdr
            changed[row.id] = [replayed.rule, format_time(replayed.delete_after)]
        row.last_activity_at = replayed.activity_at
        row.policy = history.rules.stamp
    return changed


def audit_content(store: Store, db: OrmSession, session_id: str, at: datetime, **data: Any) -> None:
    """The record of a store decision to keep content: what kind, how many bytes, never the content."""
    store.audit.append(
        db.connection(), AuditEntry("content.stored", session_id, format_time(at), data, store.rules.stamp)
    )
