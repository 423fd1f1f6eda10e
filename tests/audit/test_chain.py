"""The chain as pure functions: canonical bytes, links, verification of rows."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringfence.audit.chain import (
    GENESIS,
    AuditEntry,
    AuditError,
    canonical,
    head_mac,
    seal_entries,
    verify_rows,
)

KEY = b"k" * 32


def rows_of(entries: list[AuditEntry]) -> list[tuple]:
    """Stored rows of `entries` chained from the start."""
    return [(r.seq, r.at, r.kind, r.subject, r.policy, r.data, r.hash) for r in seal_entries(GENESIS, 1, entries)]


def head_for(rows: list[tuple]) -> tuple[int, bytes, bytes]:
    seq, digest = rows[-1][0], rows[-1][6]
    return seq, digest, head_mac(KEY, seq, digest)


def entry(i: int) -> AuditEntry:
    return AuditEntry("policy.consent", f"usr_{i}", "2026-01-01T00:00:00Z", {"value": i % 2 == 0}, "v1")


def test_an_intact_chain_verifies() -> None:
    rows = rows_of([entry(i) for i in range(10)])
    result = verify_rows(rows, head_for(rows), KEY)
    assert result.ok and result.count == 10 and result.head_seq == 10


def test_an_empty_log_verifies() -> None:
    assert verify_rows([], None, KEY).ok


@pytest.mark.parametrize(
    ("tamper", "broken", "message"),
    [
        (lambda r: [*r[:3], (*r[3][:5], r[3][5].replace(b"false", b"true"), r[3][6]), *r[4:]], 4, "altered"),
        (lambda r: [*r[:3], (r[3][0], r[3][1], "policy.dpp", *r[3][3:]), *r[4:]], 4, "altered"),
        (lambda r: [*r[:3], (r[3][0], "2027-01-01T00:00:00Z", *r[3][2:]), *r[4:]], 4, "altered"),
        (lambda r: r[:3] + r[4:], 4, "record 4 is missing"),
        (lambda r: [*r[:3], r[4], r[3], *r[5:]], 4, "record 4 is missing"),
        (lambda r: [*r[:3], r[3], r[3], *r[4:]], 5, "out of order or duplicated"),
        (lambda r: r[:-2], 9, "were removed from the end"),
        (lambda r: [*r[:3], (*r[3][:6], bytes(32)), *r[4:]], 4, "altered"),
    ],
)
def test_every_kind_of_tampering_names_the_first_broken_record(tamper, broken: int, message: str) -> None:
    rows = rows_of([entry(i) for i in range(10)])
    head = head_for(rows)
    result = verify_rows(tamper(rows), head, KEY)
    assert not result.ok
    assert result.broken_seq == broken
    assert message in result.problem


def test_a_recomputed_chain_without_the_key_is_caught_by_the_head() -> None:
    rows = rows_of([entry(i) for i in range(10)])
    forged_entries = [entry(i) for i in range(10)]
    forged_entries[4] = AuditEntry("policy.consent", "usr_4", "2026-01-01T00:00:00Z", {"value": False}, "v1")
    forged = rows_of(forged_entries)
    result = verify_rows(forged, head_for(rows), KEY)  # the attacker cannot make a MAC for the new head
    assert not result.ok and "does not end where its signed head says" in result.problem
    forged_head = (10, forged[-1][6], head_mac(b"x" * 32, 10, forged[-1][6]))
    result = verify_rows(forged, forged_head, KEY)
    assert not result.ok and "signed head was altered" in result.problem


def test_a_log_without_its_head_fails() -> None:
    rows = rows_of([entry(1)])
    result = verify_rows(rows, None, KEY)
    assert not result.ok and "head of the log is missing" in result.problem


@pytest.mark.parametrize("field", ["kind", "subject", "policy", "at"])
@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "\x1b[31mred", "a\x1fb", "", "x" * 301, "\x00"])
def test_header_fields_cannot_carry_control_characters(field: str, bad: str) -> None:
    values = {"kind": "k", "subject": "s", "at": "2026-01-01T00:00:00Z", "data": {}, "policy": "v1", field: bad}
    with pytest.raises(AuditError, match=f"audit {field} must be"):
        seal_entries(GENESIS, 1, [AuditEntry(**values)])


@given(st.text(max_size=300), st.text(max_size=300))
def test_e19_any_data_stays_one_line_of_valid_json(key: str, value: str) -> None:
    data = canonical({key: value, "quote": '"', "ansi": "\x1b[2J", "crlf": "\r\n"})
    assert b"\n" not in data and b"\r" not in data and b"\x1b" not in data
    assert json.loads(data)[key] == value


def test_non_json_data_is_refused() -> None:
    with pytest.raises(AuditError, match="plain JSON values"):
        canonical({"x": object()})
    with pytest.raises(AuditError, match="plain JSON values"):
        canonical({"x": float("nan")})
