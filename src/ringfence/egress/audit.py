"""The egress audit trail: one record per connection attempt, written off the relay's hot path.

Owns: `BatchedAudit`, which takes records from the proxy without waiting (a bounded in-memory queue), writes them
in batches from a worker thread (so neither a file nor a database write ever blocks the event loop), flushes
everything on a clean close, and counts what it had to drop when the queue was full, auditing that count itself.
Writers: a JSON-lines file (`egress serve --audit FILE`) and the store's hash-chained audit log.
Records are plain JSON values; json.dumps escapes control bytes, so a hostile target or header can never break a
line (SECURITY-CASES E19).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ringfence.store.db import Store

Record = Mapping[str, Any]
Writer = Callable[[Sequence[Record]], None]


class JsonlWriter:
    """Appends records as JSON lines to a file (created 0600), flushed after every batch."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        path.touch(mode=0o600, exist_ok=True)

    def __call__(self, records: Sequence[Record]) -> None:
        lines = "".join(json.dumps(r, separators=(",", ":"), sort_keys=True) + "\n" for r in records)
        with self._lock, open(self._path, "a", encoding="utf-8") as handle:
            handle.write(lines)


class BatchedAudit:
    """`record()` never blocks and never raises; a worker writes batches of up to `batch` records."""

    def __init__(
        self,
        writer: Writer,
        clock: Callable[[], str],
        *,
        batch: int = 512,
        capacity: int = 100_000,
        interval: float = 0.2,
    ) -> None:
        self._writer, self._clock, self._batch, self._interval = writer, clock, batch, interval
        self._queue: asyncio.Queue[Record] = asyncio.Queue(maxsize=capacity)
        self._dropped = 0
        self._task: asyncio.Task[None] | None = None
        self._pending = asyncio.Event()
        self.written = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def record(self, entry: Record) -> None:
        try:
            self._queue.put_nowait(entry)
        except asyncio.QueueFull:
            self._dropped += 1
        self._pending.set()

    @property
    def dropped(self) -> int:
        return self._dropped

    def _take(self) -> list[Record]:
        items: list[Record] = []
        while len(items) < self._batch and not self._queue.empty():
            items.append(self._queue.get_nowait())
        if self._dropped:
            items.append({"kind": "egress.audit_dropped", "at": self._clock(), "dropped": self._dropped})
            self._dropped = 0
        return items

    async def _run(self) -> None:
        while True:
            await self._pending.wait()
            await asyncio.sleep(self._interval)  # let a batch gather
            self._pending.clear()
            await self._write_all()

    async def _write_all(self) -> None:
        while items := self._take():
            await asyncio.to_thread(self._writer, items)
            self.written += len(items)

    async def close(self) -> None:
        """Write everything still queued (a clean shutdown loses nothing)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._write_all()


class StoreWriter:
    """Appends records to the store's hash-chained audit log, one transaction per batch."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __call__(self, records: Sequence[Record]) -> None:
        from ringfence.audit.chain import AuditEntry  # here: a proxy that writes JSON lines never loads the ORM

        entries = [
            AuditEntry(
                str(r.get("kind", "egress.connection")),
                str(r.get("session", "-")),
                str(r["at"]),
                {k: v for k, v in r.items() if k not in ("kind", "session", "at")},
            )
            for r in records
        ]
        with self._store.write() as db:
            self._store.audit.append_many(db.connection(), entries)
