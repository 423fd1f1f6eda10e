"""The audit log in a real SQLite database: appended in the caller's transaction; tampering with the table
directly (edit, delete, insert, reorder, truncate) is caught by `audit verify`."""

from __future__ import annotations

import io
import json
import sqlite3
import threading
from pathlib import Path

import pytest

from ringfence.audit import AuditEntry, AuditError
from ringfence.store.db import Store

DB = "ringfence.db"


def fill(store: Store, count: int = 20) -> None:
    with store.write() as db:
        store.audit.append_many(
            db.connection(),
            [AuditEntry("test.event", f"subj_{i}", "2026-01-01T00:00:00Z", {"i": i}, "v1") for i in range(count)],
        )


def tamper(data_dir: Path, store: Store, *statements: str) -> None:
    store.engine.dispose()
    with sqlite3.connect(data_dir / DB) as raw:
        for statement in statements:
            raw.execute(statement)


@pytest.mark.parametrize(
    ("statements", "broken"),
    [
        (["UPDATE audit_records SET data = CAST('{\"i\":99}' AS BLOB) WHERE seq = 7"], 7),
        (["UPDATE audit_records SET subject = 'someone_else' WHERE seq = 7"], 7),
        (["UPDATE audit_records SET kind = 'x' WHERE seq = 20"], 20),
        (["DELETE FROM audit_records WHERE seq = 7"], 7),
        (
            [
                "UPDATE audit_records SET seq = -1 WHERE seq = 7",
                "UPDATE audit_records SET seq = 7 WHERE seq = 8",
                "UPDATE audit_records SET seq = 8 WHERE seq = -1",
            ],
            7,
        ),
        (
            [
                "INSERT INTO audit_records SELECT 21, at, kind, subject, policy, data, hash FROM audit_records "
                "WHERE seq = 20"
            ],
            21,
        ),
        (["DELETE FROM audit_records WHERE seq > 15"], 16),
        (
            [
                "DELETE FROM audit_records WHERE seq > 15",
                "UPDATE audit_head SET seq = 15, hash = (SELECT hash FROM audit_records WHERE seq = 15)",
            ],
            15,
        ),
        (["DELETE FROM audit_head"], 20),
    ],
    ids=[
        "edit-data",
        "edit-subject",
        "edit-last",
        "delete",
        "reorder",
        "insert",
        "truncate",
        "truncate+head",
        "drop-head",
    ],
)
def test_audit_verify_catches_direct_tampering(
    store: Store, data_dir: Path, statements: list[str], broken: int
) -> None:
    fill(store)
    assert store.audit.verify(store.engine).ok
    tamper(data_dir, store, *statements)
    result = store.audit.verify(store.engine)
    assert not result.ok
    assert result.broken_seq == broken, result.problem


def test_a_record_is_rolled_back_with_the_change_it_records(store: Store) -> None:
    fill(store, 3)
    with pytest.raises(RuntimeError), store.write() as db:
        store.audit.append(db.connection(), AuditEntry("test.event", "s", "2026-01-01T00:00:00Z", {}, "v1"))
        raise RuntimeError("the change failed after its record was written")
    result = store.audit.verify(store.engine)
    assert result.ok and result.count == 3


def test_appending_without_a_head_is_refused(store: Store, data_dir: Path) -> None:
    fill(store, 3)
    tamper(data_dir, store, "DELETE FROM audit_head")
    with pytest.raises(AuditError, match="no signed head"), store.write() as db:
        store.audit.append(db.connection(), AuditEntry("test.event", "s", "2026-01-01T00:00:00Z", {}, "v1"))


def test_concurrent_writers_chain_one_after_another(store: Store) -> None:
    def writer(n: int) -> None:
        for i in range(25):
            with store.write() as db:
                store.audit.append(
                    db.connection(), AuditEntry("test.event", f"w{n}", "2026-01-01T00:00:00Z", {"i": i}, "v1")
                )

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    result = store.audit.verify(store.engine)
    assert result.ok and result.count == 100


def test_export_writes_one_json_object_per_line_with_the_chain(store: Store) -> None:
    fill(store, 5)
    buffer = io.StringIO()
    assert store.audit.export(store.engine, buffer) == 5
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert [line["seq"] for line in lines] == [1, 2, 3, 4, 5]
    assert lines[0]["prev"] == "00" * 32
    assert all(lines[i]["prev"] == lines[i - 1]["hash"] for i in range(1, 5))
    assert lines[2]["data"] == {"i": 2}


def test_verify_while_writers_append_sees_one_consistent_snapshot(store: Store) -> None:
    fill(store, 50)
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set() and i < 2000:
            with store.write() as db:
                store.audit.append(
                    db.connection(), AuditEntry("test.event", "w", "2026-01-01T00:00:00Z", {"i": i}, "v1")
                )
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        results = [store.audit.verify(store.engine) for _ in range(30)]
    finally:
        stop.set()
        thread.join(timeout=60)
    assert all(r.ok for r in results), [r.problem for r in results if not r.ok]
    assert results[-1].count > 50
