"""The same store on a real PostgreSQL server: migrations, the ledger, encrypted content, crypto-shredding,
the sweeper, the export and the audit chain (with tampering) behave as on SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from sqlalchemy import select, text

from ringfence.policy import PolicyError, evaluate
from ringfence.store import accounts, content
from ringfence.store.crypto import CorruptCiphertext
from ringfence.store.db import Store, open_store
from ringfence.store.errors import ContentRefused, NotFound
from ringfence.store.export import export_training
from ringfence.store.models import ContentItem, DataKey
from ringfence.store.sweeper import sweep
from tests.conftest import T0
from tests.policy.helpers import RULES
from tests.policy.histories import History, histories
from tests.postgres import cluster, new_database
from tests.store.helpers import apply, consumer, org_with_member, server_decisions

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pg_sockets() -> Iterator[str]:
    with cluster() as sockets:
        yield sockets


@pytest.fixture
def pg_store(pg_sockets: str, tmp_path: Path) -> Iterator[Store]:
    store = open_store(new_database(pg_sockets), tmp_path / "master.key", rules=RULES)
    yield store
    store.engine.dispose()


def test_migrations_build_the_same_tables(pg_store: Store) -> None:
    with pg_store.engine.connect() as conn:
        tables = set(conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars())
    assert {
        "sessions",
        "policy_events",
        "data_keys",
        "content_items",
        "audit_records",
        "audit_head",
        "alembic_version",
    } <= tables


def test_the_whole_path_on_postgresql(pg_store: Store, tmp_path: Path) -> None:
    store = pg_store
    user = consumer(store, training=True)
    session = content.start_session(store, user.id, T0, repository_id=None)
    content.put_content(store, session.id, "prompt", "a prompt", T0, turn=1)
    content.put_content(store, session.id, "code_change", "a diff", T0, turn=1)
    assert [r.text for r in content.read_content(store, session.id)] == ["a prompt", "a diff"]

    manifest = export_training(store, T0 + timedelta(days=1), tmp_path / "x.jsonl", T0 + timedelta(days=1), actor="op")
    assert manifest.sessions == [session.id]

    org, admin = org_with_member(store, "gov")
    with pytest.raises(PolicyError, match="plan 'gov' cannot join"):
        accounts.set_org_switch(store, org.id, "dpp", True, T0, actor=admin.id)

    zdr_org, zdr_admin = org_with_member(store, "api")
    accounts.set_org_switch(store, zdr_org.id, "zdr", True, T0, actor=zdr_admin.id)
    zdr_session = content.start_session(store, zdr_admin.id, T0, repository_id=None)
    with pytest.raises(ContentRefused, match="zero data retention"):
        content.put_content(store, zdr_session.id, "prompt", "never kept", T0, turn=1)

    other = content.start_session(store, user.id, T0, repository_id=None)
    content.put_content(store, other.id, "prompt", "shred me", T0, turn=1)
    content.delete_session(store, other.id, T0 + timedelta(hours=1), actor=user.id)
    with store.read() as db:
        assert db.get(DataKey, other.id) is None
        assert db.scalars(select(ContentItem).where(ContentItem.session_id == other.id)).all() == []
    with pytest.raises(NotFound):
        content.read_content(store, other.id)

    accounts.set_training(store, user.id, False, T0 + timedelta(days=2), actor=user.id)
    assert sweep(store, T0 + timedelta(days=31)).sessions == [zdr_session.id]
    assert sweep(store, T0 + timedelta(days=32)).sessions == [session.id]
    assert store.audit.verify(store.engine).ok


def test_corruption_and_tampering_are_caught_on_postgresql(pg_store: Store) -> None:
    store = pg_store
    user = consumer(store)
    session = content.start_session(store, user.id, T0, repository_id=None)
    item = content.put_content(store, session.id, "prompt", "p", T0, turn=1)
    with store.write() as db:
        db.execute(
            text("UPDATE content_items SET ciphertext = decode('00', 'hex') || ciphertext WHERE id = :i"), {"i": item}
        )
    with pytest.raises(CorruptCiphertext, match=f"content item {item}"):
        content.read_content(store, session.id)
    assert store.audit.verify(store.engine).ok
    with store.write() as db:
        db.execute(text("UPDATE audit_records SET subject = 'forged' WHERE seq = 2"))
    result = store.audit.verify(store.engine)
    assert not result.ok and result.broken_seq == 2


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(histories(max_events=12))
def test_random_histories_decide_the_same_on_postgresql(pg_sockets: str, tmp_path: Path, history: History) -> None:
    store = open_store(new_database(pg_sockets), tmp_path / "master.key", rules=RULES)
    try:
        account_ids, _, _, _ = apply(store, history)
        expected = evaluate(RULES, history.accounts, history.events, history.at)
        server = server_decisions(store, account_ids.values(), history.at)
        assert {s: (d.state, d.eligible, d.delete_after) for s, d in server.items()} == {
            s: (d.state, d.eligible, d.delete_after) for s, d in expected.sessions.items()
        }
        assert store.audit.verify(store.engine).ok
    finally:
        store.engine.dispose()


def test_the_cluster_is_reachable_only_by_its_socket(pg_sockets: str) -> None:
    with psycopg.connect(host=pg_sockets, user="postgres", dbname="postgres") as conn:
        assert conn.execute("SHOW listen_addresses").fetchone()[0] == ""


def test_concurrent_events_of_one_account_queue_on_postgresql(pg_store: Store) -> None:
    import threading

    user = consumer(pg_store)
    failures: list[BaseException] = []

    def flip(value: bool) -> None:
        try:
            for _ in range(15):
                accounts.set_training(pg_store, user.id, value, T0, actor=user.id)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=flip, args=(v,)) for v in (True, False, True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert [h["seq"] for h in accounts.settings_history(pg_store, user.id)] == list(range(1, 46))
    assert pg_store.audit.verify(pg_store.engine).ok
