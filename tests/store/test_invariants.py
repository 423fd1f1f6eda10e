"""The invariants over random histories, driven through the real store on a real SQLite file.

Each history (tests/policy/histories.py) is applied with the store's own operations (set_training,
set_org_switch, start_session, put_content, delete_session, add_feedback, rate); then:
- the server's decisions equal `policy.evaluate` on the same history (one code path), and the deadlines the
  sweeper's index uses equal the policy's (R1);
- T6: no content of a ZDR session is in any file; D1: nothing of a deleted session is either;
- R2: one sweep at T removes exactly what the policy says has expired, and a second sweep removes nothing;
- A1: each policy event wrote exactly one audit record naming the policy version, and the chain verifies;
- the training export selects exactly the sessions the policy calls eligible.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from sqlalchemy import func, select

from ringfence.audit.table import audit_records
from ringfence.policy import EventType, evaluate
from ringfence.store import accounts, content, ledger
from ringfence.store.db import Store, open_store
from ringfence.store.errors import ContentRefused
from ringfence.store.export import eligible_sessions
from ringfence.store.models import ContentItem, DataKey, Session
from ringfence.store.sweeper import sweep
from tests.conftest import T0
from tests.policy.helpers import RULES
from tests.policy.histories import History, histories


def capture_key(store: Store, key_id: str, keys: dict[str, set[bytes]], sid: str) -> None:
    """Remember a data key (raw and wrapped) while it exists, to prove later that nothing of it is left."""
    with store.read() as db:
        row = db.get(DataKey, key_id)
        assert row is not None
        raw = store.master.unwrap(row.wrapped, f"ringfence data key\x00{key_id}".encode())
        keys.setdefault(sid, set()).update({raw, row.wrapped})


def apply(store: Store, history: History) -> tuple[dict[str, str], dict[str, list[str]], int, dict[str, set[bytes]]]:
    """Replay `history` through the store. Returns (scenario account -> store account, session -> markers,
    number of policy events recorded, session -> key material it had)."""
    actors: dict[str, str] = {}
    account_ids: dict[str, str] = {}
    zdr_keys: dict[str, str] = {}
    recorded = 0
    for account in history.accounts:
        if RULES.plans[account.plan].is_consumer:
            user = accounts.create_user(store, account.id, T0, actor="t", plan=account.plan)
            actors[account.id], account_ids[account.id] = user.id, user.id
        else:
            org = accounts.create_organization(store, account.id, account.plan, T0, actor="t")
            member = accounts.create_user(store, "m", T0, actor="t", org_id=org.id, org_admin=True)
            actors[account.id], account_ids[account.id] = member.id, org.id
            if account.zdr:
                accounts.set_org_switch(store, org.id, "zdr", True, T0, actor=member.id)
                recorded += 1
            if RULES.plans[account.plan].can_have_zdr:
                zdr_keys[account.id] = accounts.create_api_key(store, member.id, "z", T0, actor="t", zdr=True)[0].id
    markers: dict[str, list[str]] = {}
    keys: dict[str, set[bytes]] = {}
    for event in sorted(history.events, key=lambda e: e.seq):
        actor, at, sid = actors[event.account], event.at, event.session
        if event.type is EventType.CONSENT:
            accounts.set_training(store, actor, bool(event.value), at, actor=actor)
        elif event.type in (EventType.DPP, EventType.ZDR):
            accounts.set_org_switch(
                store, account_ids[event.account], event.type.value, bool(event.value), at, actor=actor
            )
        elif event.type is EventType.ACTIVITY:
            assert sid is not None
            if sid in markers:
                content.record_activity(store, sid, at, actor=actor)
            else:
                key = zdr_keys[event.account] if event.zdr_key else None
                content.start_session(store, actor, at, repository_id=None, api_key_id=key, session_id=sid)
                markers[sid] = []
            marker = f"MARK-{sid}-{event.seq}-c0ffee"
            markers[sid].append(marker)
            try:
                content.put_content(store, sid, "prompt", marker, at, turn=event.seq)
                capture_key(store, sid, keys, sid)
            except ContentRefused as refused:
                assert "zero data retention" in str(refused)
        elif event.type is EventType.DELETE:
            content.delete_session(store, sid, at, actor=actor)
        elif event.type is EventType.FEEDBACK:
            marker = f"FEEDBACK-{sid}-{event.seq}-c0ffee"
            markers[sid].append(marker)
            content.add_feedback(store, sid, marker, at, actor=actor)
        else:
            content.rate(store, sid, event.value, at, actor=actor)  # type: ignore[arg-type]
        recorded += 1
    return account_ids, markers, recorded, keys


def on_disk(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(max_events=18))
def test_store_keeps_the_policy_on_random_histories(history: History) -> None:
    root = Path(tempfile.mkdtemp(prefix="rf-prop-"))
    store = open_store(f"sqlite:///{root / 'rf.db'}", root / "master.key", rules=RULES)
    try:
        account_ids, markers, recorded, keys = apply(store, history)
        expected = evaluate(RULES, history.accounts, history.events, history.at)

        # The server's own decisions (replaying its ledger) are the policy's decisions.
        with store.read() as db:
            server = {}
            for store_account in set(account_ids.values()):
                decided = ledger.decisions(store, db, store_account, history.at)
                server.update(decided.sessions)
            rows = {s.id: s for s in db.scalars(select(Session))}
        assert set(server) == set(expected.sessions)
        for sid, want in expected.sessions.items():
            got = server[sid]
            assert (got.state, got.eligible, got.retention_rule, got.delete_after, got.reason_code) == (
                want.state,
                want.eligible,
                want.retention_rule,
                want.delete_after,
                want.reason_code,
            )
            row = rows[sid]
            assert row.zdr == want.zdr
            if want.state != "deleted":  # R1: the index the sweeper uses holds the policy's deadline
                assert (row.retention_rule, row.delete_after) == (want.retention_rule, want.delete_after)

        # The export picks exactly the eligible sessions.
        assert {sid for sid, _ in eligible_sessions(store, history.at)} == {
            sid for sid, d in expected.sessions.items() if d.eligible
        }

        # R2: one sweep removes exactly what expired; a second removes nothing.
        report = sweep(store, history.at)
        assert set(report.sessions) == {sid for sid, d in expected.sessions.items() if d.state == "expired"}
        assert sweep(store, history.at).sessions == []
        with store.read() as db:
            for sid, want in expected.sessions.items():
                stored = db.scalar(select(func.count()).where(ContentItem.session_id == sid, ContentItem.key_id == sid))
                if want.state == "active" and not want.zdr:
                    assert stored == sum(m.startswith("MARK") for m in markers[sid])
                else:
                    assert stored == 0

        # Content of live sessions decrypts; T6, D1 and expiry: nothing of the others is anywhere on disk,
        # neither the plaintext nor the data key that could decrypt it (raw or wrapped).
        disk = on_disk(root)
        for sid, want in expected.sessions.items():
            for marker in markers[sid]:
                assert marker.encode() not in disk
            if want.zdr:
                assert sid not in keys
            if want.state == "active" and not want.zdr:
                assert [r.text for r in content.read_content(store, sid)] == [
                    m for m in markers[sid] if m.startswith("MARK")
                ]
            elif want.state in ("deleted", "expired"):
                for material in keys.get(sid, ()):
                    assert material not in disk, (sid, want.state)

        # A1: one audit record per policy event, each naming the policy version; the chain verifies.
        with store.read() as db:
            policy_records = (
                db.execute(select(audit_records.c.policy).where(audit_records.c.kind.like("policy.%"))).scalars().all()
            )
        assert len(policy_records) == recorded
        assert set(policy_records) <= {RULES.stamp}
        assert store.audit.verify(store.engine).ok
    finally:
        store.engine.dispose()
        shutil.rmtree(root)
