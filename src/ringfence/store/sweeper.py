"""The retention sweeper: deletes what is past its deadline, destroying keys first.

Owns: finding expired sessions and feedback through the (state, delete_after) index, purging them in small
transactions that re-check the deadline (so a session that saw new activity meanwhile is left alone, and two
sweeps never purge the same thing twice), one audit record per purge, and the list of records whose deadline it
cannot compute, which it reports and never deletes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, delete, or_, select, update

from ringfence.audit import AuditEntry
from ringfence.policy import format_time
from ringfence.store.db import Store, truncate_wal
from ringfence.store.models import ContentItem, DataKey, Feedback, Session

BATCH = 2000


@dataclass
class SweepReport:
    """What one sweep did (or, in a dry run, would do)."""

    now: datetime
    dry_run: bool
    sessions: list[str] = field(default_factory=list)
    feedback: list[str] = field(default_factory=list)
    undecidable: list[str] = field(default_factory=list)


def expired_sessions_query(now: datetime, limit: int) -> object:
    return (
        select(Session.id, Session.retention_rule, Session.delete_after)
        .where(Session.state == "active", Session.delete_after <= now)
        .order_by(Session.delete_after)
        .limit(limit)
    )


def sweep(store: Store, now: datetime, *, dry_run: bool = False, batch: int = BATCH) -> SweepReport:
    report = SweepReport(now, dry_run)
    with store.read() as db:
        report.undecidable = list(
            db.scalars(
                select(Session.id).where(
                    Session.state == "active", or_(Session.delete_after.is_(None), Session.retention_rule.is_(None))
                )
            )
        )
        if dry_run:
            report.sessions = list(
                db.scalars(select(Session.id).where(Session.state == "active", Session.delete_after <= now))
            )
            report.feedback = list(
                db.scalars(select(Feedback.id).where(Feedback.purged_at.is_(None), Feedback.delete_after <= now))
            )
            return report
    while _purge_sessions(store, now, batch, report):
        pass
    while _purge_feedback(store, now, batch, report):
        pass
    if report.sessions or report.feedback:
        truncate_wal(store.engine)
    return report


def _purge_sessions(store: Store, now: datetime, batch: int, report: SweepReport) -> bool:
    with store.write() as db:
        rows = db.execute(expired_sessions_query(now, batch)).all()  # type: ignore[call-overload]
        if not rows:
            return False
        ids = [r.id for r in rows]
        db.execute(delete(DataKey).where(DataKey.id.in_(ids)))
        db.execute(delete(ContentItem).where(ContentItem.key_id.in_(ids)))
        db.execute(
            update(Session)
            .where(Session.id.in_(ids), and_(Session.state == "active", Session.delete_after <= now))
            .values(state="expired", purged_at=now)
        )
        stamp, at = store.rules.stamp, format_time(now)
        store.audit.append_many(
            db.connection(),
            [
                AuditEntry(
                    "retention.expired",
                    r.id,
                    at,
                    {"rule": r.retention_rule, "delete_after": format_time(r.delete_after)},
                    stamp,
                )
                for r in rows
            ],
        )
        report.sessions.extend(ids)
        return len(rows) == batch


def _purge_feedback(store: Store, now: datetime, batch: int, report: SweepReport) -> bool:
    with store.write() as db:
        rows = db.execute(
            select(Feedback.id, Feedback.session_id, Feedback.delete_after)
            .where(Feedback.purged_at.is_(None), Feedback.delete_after <= now)
            .limit(batch)
        ).all()
        if not rows:
            return False
        ids = [r.id for r in rows]
        db.execute(delete(DataKey).where(DataKey.id.in_(ids)))
        db.execute(delete(ContentItem).where(ContentItem.key_id.in_(ids)))
        db.execute(update(Feedback).where(Feedback.id.in_(ids)).values(purged_at=now))
        stamp, at = store.rules.stamp, format_time(now)
        store.audit.append_many(
            db.connection(),
            [
                AuditEntry(
                    "retention.feedback_expired",
                    r.id,
                    at,
                    {"session": r.session_id, "delete_after": format_time(r.delete_after)},
                    stamp,
                )
                for r in rows
            ],
        )
        report.feedback.extend(ids)
        return len(rows) == batch
