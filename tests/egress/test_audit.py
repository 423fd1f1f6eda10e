"""Egress audit records go through the audit package: batched, into the hash chain, none lost on close, and a
full queue audits how many it dropped."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import func, select

from ringfence.audit.table import audit_records
from ringfence.egress.audit import BatchedAudit, StoreWriter
from ringfence.store.db import Store


def test_records_land_in_the_verified_chain_and_close_flushes_everything(store: Store) -> None:
    async def go() -> None:
        audit = BatchedAudit(StoreWriter(store), lambda: "2026-11-24T00:00:00+00:00", batch=7, interval=10)
        audit.start()
        for n in range(50):
            audit.record(
                {"kind": "egress.connection", "session": "sess_1", "at": "2026-11-24T00:00:00+00:00",
                 "host": f"h{n}\x1b[31m\r\n.example", "decision": "deny"}
            )  # fmt: skip
        await audit.close()  # long interval: only the close can have written them

    asyncio.run(go())
    with store.read() as db:
        count = db.execute(select(func.count()).select_from(audit_records)).scalar_one()
        kinds = set(db.execute(select(audit_records.c.kind)).scalars())
    assert count >= 50 and "egress.connection" in kinds
    assert store.audit.verify(store.engine).ok


def test_a_full_queue_counts_and_audits_what_it_dropped() -> None:
    written: list[Any] = []

    async def go() -> int:
        audit = BatchedAudit(written.extend, lambda: "now", capacity=3, interval=10)
        for n in range(10):
            audit.record({"n": n})
        dropped = audit.dropped
        await audit.close()
        return dropped

    assert asyncio.run(go()) == 7
    assert [r.get("n") for r in written[:3]] == [0, 1, 2]
    assert written[3] == {"kind": "egress.audit_dropped", "at": "now", "dropped": 7}
