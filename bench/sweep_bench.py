"""The sweep over 1,000,000 sessions of which 10% are expired: time, and the query plan showing the index."""

from __future__ import annotations

import os
import random
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from bench.common import Figure, fresh_store
from ringfence.store import accounts
from ringfence.store.sweeper import sweep

NOW = datetime(2026, 11, 24, tzinfo=UTC)


def _fmt(moment: datetime) -> str:
    return moment.replace(tzinfo=None).isoformat(sep=" ")


def run(sessions: int) -> list[Figure]:
    with fresh_store() as (store, _):
        user = accounts.create_user(store, "bench", NOW - timedelta(days=400), actor="bench", plan="pro")
        rng = random.Random(7)
        expired = set(rng.sample(range(sessions), sessions // 10))
        start = time.perf_counter()
        raw = store.engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute("BEGIN")
            chunk = 50_000
            for base in range(0, sessions, chunk):
                srows, krows, crows = [], [], []
                for i in range(base, min(base + chunk, sessions)):
                    sid = f"ses_{i:016x}"
                    age = 31 + i % 300 if i in expired else i % 29
                    last = NOW - timedelta(days=age)
                    created = _fmt(last)
                    srows.append(
                        (
                            sid,
                            user.id,
                            user.id,
                            created,
                            created,
                            "consumer-training-off",
                            _fmt(last + timedelta(days=30)),
                            "bench",
                        )
                    )
                    krows.append((sid, os.urandom(60), store.master.key_id, created))
                    crows.append((sid, sid, os.urandom(12), os.urandom(96), created))
                cur.executemany(
                    "INSERT INTO sessions (id, account_id, user_id, zdr, state, created_at, last_activity_at, "
                    "retention_rule, delete_after, policy) VALUES (?, ?, ?, 0, 'active', ?, ?, ?, ?, ?)",
                    srows,
                )
                cur.executemany(
                    "INSERT INTO data_keys (id, wrapped, master_key_id, created_at) VALUES (?,?,?,?)", krows
                )
                cur.executemany(
                    "INSERT INTO content_items (session_id, key_id, kind, turn, nonce, ciphertext, created_at) "
                    "VALUES (?, ?, 'prompt', 1, ?, ?, ?)",
                    crows,
                )
            cur.execute("COMMIT")
            cur.execute("ANALYZE")
        finally:
            raw.close()
        seeded = time.perf_counter() - start

        with store.engine.connect() as conn:
            plan = " / ".join(
                str(r[-1])
                for r in conn.execute(
                    text(
                        "EXPLAIN QUERY PLAN SELECT id, retention_rule, delete_after FROM sessions "
                        "WHERE state = 'active' AND delete_after <= :now ORDER BY delete_after LIMIT 2000"
                    ),
                    {"now": _fmt(NOW)},
                )
            )
        start = time.perf_counter()
        report = sweep(store, NOW)
        took = time.perf_counter() - start
        assert len(report.sessions) == len(expired), (len(report.sessions), len(expired))
        assert set(report.sessions) == {f"ses_{i:016x}" for i in expired}
        with store.engine.connect() as conn:
            left = conn.execute(text("SELECT count(*) FROM data_keys")).scalar()
        assert left == sessions - len(expired)
        second = time.perf_counter()
        assert sweep(store, NOW).sessions == []
        idle = time.perf_counter() - second
    return [
        Figure(
            f"sweep: {sessions:,} sessions, {len(expired):,} expired (keys, content, audit record each)",
            took,
            "s",
            "< 30 s",
            took < 30,
            f"query plan: {plan}; a second sweep with nothing due took {idle * 1000:.1f} ms; "
            f"seeding took {seeded:.1f} s",
        ),
    ]
