"""The hash chain of the audit log, as pure functions over values and bytes.

Owns: the canonical bytes of a record, the link `hash_n = SHA-256(hash_{n-1} || header_n || data_n)`, the MAC
of the signed head, and verification of any sequence of stored rows. Knows nothing of SQL or of what a record
means; the caller supplies rows and gets back the first broken one, named.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

GENESIS = bytes(32)
# Header fields are joined with unit separators, so they may not contain control characters (this also keeps a
# record to one line when exported: log injection through a kind, subject or policy stamp is impossible).
_FIELD = re.compile(r"^[^\x00-\x1f\x7f]{1,300}$")


class AuditError(Exception):
    """The audit log cannot take or prove a record; the message says why."""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """A record to append: what happened (`kind`), to what (`subject`), when, under which policy, and the details."""

    kind: str
    subject: str
    at: str
    data: Mapping[str, Any]
    policy: str = "-"


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """A stored record: its place in the chain and its hash."""

    seq: int
    at: str
    kind: str
    subject: str
    policy: str
    data: bytes
    hash: bytes

    def to_json(self, prev: bytes) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at,
            "kind": self.kind,
            "subject": self.subject,
            "policy": self.policy,
            "data": json.loads(self.data),
            "prev": prev.hex(),
            "hash": self.hash.hex(),
        }


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of walking the chain: intact, or the first broken record and why."""

    ok: bool
    count: int
    head_seq: int
    head_hash: bytes
    broken_seq: int | None = None
    problem: str | None = None


def canonical(data: Mapping[str, Any]) -> bytes:
    """One byte string per mapping: sorted keys, no spaces, non-ASCII escaped (so every record is one line)."""
    try:
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise AuditError(f"audit data must be plain JSON values: {exc}") from None


def check_field(name: str, value: str) -> None:
    if not isinstance(value, str) or not _FIELD.match(value):
        raise AuditError(f"audit {name} must be 1-300 characters without control characters, got {value!r:.80}")


def link(prev: bytes, seq: int, at: str, kind: str, subject: str, policy: str, data: bytes) -> bytes:
    header = f"{seq}\x1f{at}\x1f{kind}\x1f{subject}\x1f{policy}\x1e".encode()
    return hashlib.sha256(prev + header + data).digest()


def head_mac(key: bytes, seq: int, digest: bytes) -> bytes:
    return hmac.new(key, b"ringfence audit head\x00" + str(seq).encode() + b"\x00" + digest, "sha256").digest()


def seal_entries(prev: bytes, next_seq: int, entries: Iterable[AuditEntry]) -> list[AuditRecord]:
    """Chain `entries` after (`prev`, `next_seq - 1`)."""
    records = []
    for offset, entry in enumerate(entries):
        for name in ("kind", "subject", "at", "policy"):
            check_field(name, getattr(entry, name))
        data = canonical(entry.data)
        seq = next_seq + offset
        prev = link(prev, seq, entry.at, entry.kind, entry.subject, entry.policy, data)
        records.append(AuditRecord(seq, entry.at, entry.kind, entry.subject, entry.policy, data, prev))
    return records


Row = tuple[int, str, str, str, str, bytes, bytes]  # seq, at, kind, subject, policy, data, hash


def verify_rows(rows: Iterable[Row], head: tuple[int, bytes, bytes] | None, key: bytes) -> Verification:
    """Walk rows in stored order; the first record whose seq, link or hash is wrong is named.

    `head` is the signed (seq, hash, mac) kept beside the log: it proves nothing was cut from the end.
    """
    prev, expected, count = GENESIS, 1, 0
    sha256 = hashlib.sha256
    for seq, at, kind, subject, policy, data, stored in rows:
        digest = bytes(stored)
        if seq != expected:
            problem = (
                f"record {expected} is missing (next stored record is {seq})"
                if seq > expected
                else f"record {seq} is out of order or duplicated (expected {expected})"
            )
            return Verification(False, count, expected - 1, prev, expected, problem)
        header = f"{seq}\x1f{at}\x1f{kind}\x1f{subject}\x1f{policy}\x1e".encode()
        computed = sha256(prev + header + data).digest()
        if computed != digest:
            problem = f"record {seq} was altered, or does not follow record {seq - 1}: its hash does not match"
            return Verification(False, count, seq - 1, prev, seq, problem)
        prev, expected, count = computed, expected + 1, count + 1
    last = expected - 1
    if head is None:
        if count:
            return Verification(False, count, last, prev, last, "the signed head of the log is missing")
        return Verification(True, 0, 0, GENESIS)
    head_seq, head_hash, mac = head
    if not hmac.compare_digest(head_mac(key, head_seq, bytes(head_hash)), bytes(mac)):
        return Verification(False, count, last, prev, head_seq, "the signed head was altered (its MAC is invalid)")
    if head_seq > last:
        return Verification(
            False, count, last, prev, last + 1, f"records {last + 1} to {head_seq} were removed from the end"
        )
    if head_seq < last or bytes(head_hash) != prev:
        return Verification(
            False,
            count,
            last,
            prev,
            head_seq + 1 if head_seq < last else head_seq,
            "the log does not end where its signed head says",
        )
    return Verification(True, count, last, prev)
