"""The audit log over SQL: append in the caller's transaction, verify, export.

Owns: reading and moving the signed head, inserting chained records, and streaming the chain for verification
and export. Appends happen inside the caller's transaction (A1: a decision and its record commit together); the
head row is locked (`FOR UPDATE`; SQLite transactions here are `BEGIN IMMEDIATE`), so concurrent writers chain
one after another. Knows nothing of what records mean.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import IO, cast

from sqlalchemy import Connection, Engine, insert, select, update

from ringfence.audit.chain import (
    GENESIS,
    AuditEntry,
    AuditError,
    AuditRecord,
    Row,
    Verification,
    head_mac,
    seal_entries,
    verify_rows,
)
from ringfence.audit.table import audit_head, audit_records

_BATCH = 5000


class AuditLog:
    """Append-only, hash-chained records. `head_key` signs the head (derived from the master key)."""

    def __init__(self, head_key: bytes) -> None:
        self._key = head_key

    def append(self, conn: Connection, entry: AuditEntry) -> AuditRecord:
        return self.append_many(conn, [entry])[0]

    def append_many(self, conn: Connection, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        """Chain and insert `entries` in the caller's open transaction."""
        if not entries:
            return []
        head = conn.execute(
            select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1).with_for_update()
        ).first()
        if head is None:
            if conn.execute(select(audit_records.c.seq).limit(1)).first() is not None:
                raise AuditError("the audit log has records but no signed head: refusing to append (run audit verify)")
            seq, prev = 0, GENESIS
        else:
            seq, prev = int(head.seq), bytes(head.hash)
        records = seal_entries(prev, seq + 1, entries)
        conn.execute(
            insert(audit_records),
            [
                {
                    "seq": r.seq,
                    "at": r.at,
                    "kind": r.kind,
                    "subject": r.subject,
                    "policy": r.policy,
                    "data": r.data,
                    "hash": r.hash,
                }
                for r in records
            ],
        )
        last = records[-1]
        values = {"seq": last.seq, "hash": last.hash, "mac": head_mac(self._key, last.seq, last.hash)}
        if head is None:
            conn.execute(insert(audit_head).values(id=1, **values))
        else:
            conn.execute(update(audit_head).where(audit_head.c.id == 1).values(**values))
        return records

    def verify(self, engine: Engine) -> Verification:
        """Walk the whole chain in seq order and check it against the signed head, both read in one snapshot
        (so appends landing meanwhile are neither seen half nor mistaken for tampering)."""
        # The DBAPI cursor directly: SQLAlchemy's row objects cost ~10% of the walk, and this loop is the hot one.
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            if engine.dialect.name == "sqlite":
                cursor.execute("BEGIN")  # a WAL read transaction: one snapshot for both queries
            else:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cursor.execute("SELECT seq, hash, mac FROM audit_head WHERE id = 1")
            found = cursor.fetchone()
            head = None if found is None else (int(found[0]), bytes(found[1]), bytes(found[2]))
            cursor.execute("SELECT seq, at, kind, subject, policy, data, hash FROM audit_records ORDER BY seq")
            return verify_rows(cast(Iterable[Row], cursor), head, self._key)
        finally:
            raw.rollback()
            raw.close()

    def export(self, engine: Engine, out: IO[str]) -> int:
        """Write every record as one JSON object per line; returns the count."""
        count, prev = 0, GENESIS
        with engine.connect() as conn:
            for row in conn.execution_options(yield_per=_BATCH).execute(
                select(audit_records).order_by(audit_records.c.seq)
            ):
                record = AuditRecord(
                    row.seq, row.at, row.kind, row.subject, row.policy, bytes(row.data), bytes(row.hash)
                )
                out.write(json.dumps(record.to_json(prev), sort_keys=True, ensure_ascii=True) + "\n")
                prev, count = record.hash, count + 1
        return count
