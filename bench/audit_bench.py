"""Audit append and verification throughput, each beside an unchained baseline on the same rows."""

from __future__ import annotations

import time

from sqlalchemy import insert

from bench.common import Figure, fresh_store
from ringfence.audit import AuditEntry
from ringfence.audit.chain import GENESIS
from ringfence.audit.table import audit_records

BATCH = 1000


def _entries(start: int, count: int) -> list[AuditEntry]:
    return [
        AuditEntry(
            "egress.connect",
            f"ses_{(start + i) % 997:016x}",
            "2026-11-24T12:00:00.123456Z",
            {
                "host": "api.anthropic.com",
                "port": 443,
                "decision": "allow",
                "rule": "trusted",
                "bytes_up": 1234 + i,
                "bytes_down": 56789,
            },
            "2026-11-24.1+5e8cdd321bbd3fb8",
        )
        for i in range(count)
    ]


def run(records: int) -> list[Figure]:
    figures = []
    with fresh_store() as (store, _):
        batches = [_entries(i, BATCH) for i in range(0, records, BATCH)]
        start = time.perf_counter()
        for batch in batches:
            with store.write() as db:
                store.audit.append_many(db.connection(), batch)
        chained = records / (time.perf_counter() - start)

        with fresh_store() as (plain, _):
            rows = [
                {
                    "seq": n,
                    "at": e.at,
                    "kind": e.kind,
                    "subject": e.subject,
                    "policy": e.policy,
                    "data": b"{}",
                    "hash": GENESIS,
                }
                for n, e in enumerate((e for b in batches for e in b), 1)
            ]
            start = time.perf_counter()
            for i in range(0, records, BATCH):
                with plain.write() as db:
                    db.connection().execute(insert(audit_records), rows[i : i + BATCH])
            baseline = records / (time.perf_counter() - start)

        start = time.perf_counter()
        result = store.audit.verify(store.engine)
        verify = result.count / (time.perf_counter() - start)
        assert result.ok and result.count == records

        with store.engine.connect() as conn:
            start = time.perf_counter()
            count = sum(
                1
                for _ in conn.execution_options(stream_results=True, yield_per=5000).exec_driver_sql(
                    "SELECT seq, at, kind, subject, policy, data, hash FROM audit_records ORDER BY seq"
                )
            )
            read_only = count / (time.perf_counter() - start)

    figures.append(
        Figure(
            "audit append, hash-chained, 1,000 records per transaction",
            chained,
            "records/s",
            ">= 20,000",
            chained >= 20_000,
            f"{chained / baseline:.2f}x the rate of the same inserts without the chain ({baseline:,.0f}/s)",
        )
    )
    figures.append(
        Figure(
            "audit verify (whole chain + signed head)",
            verify,
            "records/s",
            ">= 500,000",
            verify >= 500_000,
            f"{verify / read_only:.2f}x the rate of just reading the rows ({read_only:,.0f}/s)",
        )
    )
    return figures
