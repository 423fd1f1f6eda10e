"""The retention sweeper: exact, idempotent, safe beside writers, honest about what it cannot decide."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import text, update

from ringfence.store import content
from ringfence.store.db import Store
from ringfence.store.errors import ContentRefused
from ringfence.store.models import Session
from ringfence.store.sweeper import sweep
from tests.conftest import T0
from tests.store.helpers import consumer


def test_nothing_before_its_deadline_everything_after(store: Store) -> None:
    user = consumer(store)
    session = content.start_session(store, user.id, T0, repository_id=None)
    content.put_content(store, session.id, "prompt", "p", T0, turn=1)
    deadline = T0 + timedelta(days=30)
    assert sweep(store, deadline - timedelta(microseconds=1)).sessions == []
    assert content.read_content(store, session.id)[0].text == "p"
    assert sweep(store, deadline).sessions == [session.id]
    assert sweep(store, deadline).sessions == []  # idempotent
    assert content.count_content(store, session.id) == 0


def test_dry_run_deletes_nothing(store: Store) -> None:
    user = consumer(store)
    session = content.start_session(store, user.id, T0, repository_id=None)
    content.put_content(store, session.id, "prompt", "p", T0, turn=1)
    report = sweep(store, T0 + timedelta(days=31), dry_run=True)
    assert report.sessions == [session.id] and report.dry_run
    assert content.count_content(store, session.id) == 1


def test_a_record_without_a_deadline_is_reported_never_deleted(store: Store) -> None:
    user = consumer(store)
    session = content.start_session(store, user.id, T0, repository_id=None)
    content.put_content(store, session.id, "prompt", "p", T0, turn=1)
    with store.write() as db:
        db.execute(update(Session).where(Session.id == session.id).values(delete_after=None))
    report = sweep(store, T0 + timedelta(days=3650))
    assert report.undecidable == [session.id]
    assert report.sessions == []
    assert content.count_content(store, session.id) == 1
    try:
        content.put_content(store, session.id, "prompt", "more", T0, turn=2)
    except ContentRefused as refused:
        assert "no retention decision" in str(refused)
    else:
        raise AssertionError("content was accepted without a retention decision")


def test_feedback_outlives_its_session_and_then_goes(store: Store) -> None:
    user = consumer(store)
    session = content.start_session(store, user.id, T0, repository_id=None)
    feedback = content.add_feedback(store, session.id, "transcript", T0, actor=user.id)
    assert sweep(store, T0 + timedelta(days=31)).sessions == [session.id]
    with store.read() as db:
        assert db.get(type(feedback), feedback.id).purged_at is None
    report = sweep(store, T0 + timedelta(days=5 * 366))
    assert report.feedback == [feedback.id]


def test_new_activity_during_a_sweep_wins(store: Store) -> None:
    """A writer extends sessions while sweeps run; a session is never purged after its deadline moved."""
    user = consumer(store)
    sessions = [content.start_session(store, user.id, T0, repository_id=None).id for _ in range(60)]
    late = T0 + timedelta(days=29, hours=23)
    now = T0 + timedelta(days=30)
    errors: list[BaseException] = []
    extended: list[str] = []

    def writer() -> None:
        try:
            for sid in sessions[::2]:
                try:
                    content.record_activity(store, sid, late, actor=user.id)
                    extended.append(sid)
                except Exception as exc:  # a session already purged refuses new activity: that is correct
                    assert "expired" in str(exc) or "is expired" in str(exc)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    purged = set()
    for _ in range(5):
        purged |= set(sweep(store, now, batch=7).sessions)
    thread.join(timeout=60)
    assert not errors
    purged |= set(sweep(store, now).sessions)
    assert not purged & set(extended)
    assert purged | set(extended) == set(sessions)
    assert store.audit.verify(store.engine).ok


def test_the_sweep_query_uses_the_deadline_index(store: Store) -> None:
    with store.engine.connect() as conn:
        plan = " ".join(
            str(row[-1])
            for row in conn.execute(
                text(
                    "EXPLAIN QUERY PLAN SELECT id FROM sessions WHERE state = 'active' AND delete_after <= :now "
                    "ORDER BY delete_after LIMIT 100"
                ),
                {"now": "2026-01-01 00:00:00"},
            )
        )
    assert "USING INDEX ix_sessions_state_delete_after" in plan, plan
    assert "SCAN sessions" not in plan
