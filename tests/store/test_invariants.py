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
from ringfence.policy import evaluate
from ringfence.store import content
from ringfence.store.db import open_store
from ringfence.store.export import eligible_sessions
from ringfence.store.models import ContentItem, Session
from ringfence.store.sweeper import sweep
from tests.policy.helpers import RULES
from tests.policy.histories import History, histories
from tests.store.helpers import apply, server_decisions


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
        server = server_decisions(store, account_ids.values(), history.at)
        with store.read() as db:
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
                plaintext_on_disk = marker.encode() in disk
                assert not plaintext_on_disk, marker
            if want.zdr:
                assert sid not in keys
            if want.state == "active" and not want.zdr:
                assert [r.text for r in content.read_content(store, sid)] == [
                    m for m in markers[sid] if m.startswith("MARK")
                ]
            elif want.state in ("deleted", "expired"):
                for material in keys.get(sid, ()):
                    left_on_disk = material in disk  # a bool, so a failure never prints key material
                    assert not left_on_disk, (sid, want.state)

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
