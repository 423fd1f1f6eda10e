"""SECURITY-CASES G6-G8 on the push head, as tables and properties: only the session branch, no deletes, and
every malformed head refused before a byte of it could be forwarded."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringfence.gateway.pktline import FLUSH, PktLineError, PktLineReader, Special, encode
from ringfence.gateway.receive_pack import PushHeadReader, PushRefused, check_push

A = "a" * 40
B = "b" * 40
Z = "0" * 40
BRANCH = "ringfence/sess_1"
MINE = f"refs/heads/{BRANCH}"
CAPS = b"report-status side-band-64k agent=git/2.39"
PACK = b"PACK\x00\x00\x00\x02\x00\x00\x00\x00" + b"\x00" * 20


def body(*commands: str, caps: bytes = CAPS, options: list[str] | None = None, shallow: list[str] = ()) -> bytes:
    out = b"".join(encode(f"shallow {s}".encode()) for s in shallow)
    for i, command in enumerate(commands):
        out += encode(command.encode() + (b"\x00" + caps if i == 0 else b""))
    out += FLUSH
    if options is not None:
        out += b"".join(encode(o.encode()) for o in options) + FLUSH
    return out + PACK


def read(data: bytes, chunk: int | None = None):
    reader = PushHeadReader()
    if chunk is None:
        return reader.feed(data), reader
    head = None
    for i in range(0, len(data), chunk):
        head = reader.feed(data[i : i + chunk])
        if head is not None:
            return head, reader
    return head, reader


def test_a_push_to_the_session_branch_is_read_whole_and_allowed() -> None:
    head, reader = read(body(f"{A} {B} {MINE}"))
    assert head is not None and head.refs == (MINE,) and "report-status" in head.capabilities
    assert reader.pack_start == PACK
    check_push(head, BRANCH)


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 64])
def test_the_head_is_found_however_the_bytes_are_split(chunk: int) -> None:
    data = body(f"{Z} {B} {MINE}", shallow=["c" * 40])
    head, reader = read(data, chunk)
    assert head is not None and head.commands[0].creates and head.shallow == ("c" * 40,)
    assert head.length + len(reader.pack_start) <= len(data)
    assert data[head.length :].startswith(reader.pack_start[:4])


FORBIDDEN_REFS = [
    "refs/heads/main",
    "refs/heads/master",
    "refs/heads/other",
    "refs/tags/v1.0",
    "refs/notes/commits",
    "refs/pull/1/head",
    "HEAD",
    f"refs/heads/{BRANCH.upper()}",
    f"refs/heads/{BRANCH}/../main",
    f"refs/heads/{BRANCH}.",
    f"refs/heads/{BRANCH}.lock",
    f"refs/heads/{BRANCH}x",
    f"refs/heads/x/{BRANCH}",
    f"refs/heads//{BRANCH}",
    f"refs/remotes/origin/{BRANCH}",
    f"refs/heads/{BRANCH}\u200b",
]


@pytest.mark.parametrize("ref", FORBIDDEN_REFS)
def test_g6_any_other_ref_is_refused(ref: str) -> None:
    head, _ = read(body(f"{A} {B} {ref}"))
    assert head is not None
    with pytest.raises(PushRefused, match="may push only to"):
        check_push(head, BRANCH)


@pytest.mark.parametrize("other", FORBIDDEN_REFS[:6])
def test_g6_a_multi_ref_push_with_one_forbidden_ref_is_refused_whole(other: str) -> None:
    for commands in ((f"{A} {B} {MINE}", f"{A} {B} {other}"), (f"{A} {B} {other}", f"{A} {B} {MINE}")):
        head, _ = read(body(*commands, caps=CAPS + b" atomic"))
        assert head is not None
        with pytest.raises(PushRefused):
            check_push(head, BRANCH)


def test_g6_deleting_the_session_branch_is_refused() -> None:
    head, _ = read(body(f"{A} {Z} {MINE}"))
    assert head is not None and head.commands[0].deletes
    with pytest.raises(PushRefused, match="deleting"):
        check_push(head, BRANCH)


def test_g6_the_same_ref_twice_is_refused() -> None:
    head, _ = read(body(f"{A} {B} {MINE}", f"{B} {A} {MINE}"))
    assert head is not None
    with pytest.raises(PushRefused, match="twice"):
        check_push(head, BRANCH)


@pytest.mark.parametrize(
    "data",
    [
        b"0001" + FLUSH,  # G7: delim in a v0 push
        b"00zz" + FLUSH,
        b"0003",
        b"ffff" + b"x" * 10,
        encode(f"{A} {B} {MINE}".encode()) + FLUSH,  # no capability list
        encode(f"{A} {B} {MINE}\x00caps\x00more".encode()) + FLUSH,
        encode(f"{A} {B} {MINE}\x00caps".encode()) + encode(f"{A} {B} refs/heads/x\x00".encode()) + FLUSH,
        encode(f"{A} {B}\x00caps".encode()) + FLUSH,
        encode(f"{A}  {B} {MINE}\x00caps".encode()) + FLUSH,
        encode(f"{A[:39]} {B} {MINE}\x00caps".encode()) + FLUSH,
        encode(f"{A.upper()} {B} {MINE}\x00caps".encode()) + FLUSH,
        encode(f"{A} {'b' * 64} {MINE}\x00caps".encode()) + FLUSH,
        encode(f"{A} {B} {MINE} extra\x00caps".encode()) + FLUSH,
        encode(f"{A} {B} refs/heads/a\tb\x00caps".encode()) + FLUSH,
        encode(b"shallow nothex") + FLUSH,
        FLUSH,
    ],
)
def test_g7_malformed_heads_are_refused(data: bytes) -> None:
    with pytest.raises(PushRefused) as refused:
        read(data + PACK)
    assert refused.value.malformed


def test_g7_huge_command_lists_and_heads_are_bounded() -> None:
    many = body(*[f"{A} {B} refs/heads/b{i}" for i in range(1200)])
    with pytest.raises(PushRefused, match="more than 1000"):
        read(many)
    reader = PushHeadReader(max_head=4096)
    with pytest.raises(PushRefused, match="over 4096 bytes"):
        reader.feed(body(*[f"{A} {B} refs/heads/{'x' * 200}{i}" for i in range(100)]))


def test_g7_push_options_are_read_when_asked_for() -> None:
    data = body(f"{A} {B} {MINE}", caps=CAPS + b" push-options", options=["ci.skip", "merge_request.create"])
    head, reader = read(data)
    assert head is not None and head.push_options == ("ci.skip", "merge_request.create")
    assert reader.pack_start == PACK


def cert(commands: list[str], after: list[bytes] = ()) -> bytes:
    lines = [b"push-cert\x00" + CAPS + b"\n", b"certificate version 0.1\n",
             b"pusher A U Thor <a@example.com> 0 +0000\n", b"pushee https://example.com/r.git\n", b"nonce 1234\n",
             b"\n"]  # fmt: skip
    lines += [c.encode() + b"\n" for c in commands]
    lines += [b"-----BEGIN PGP SIGNATURE-----\n", b"abc\n", b"-----END PGP SIGNATURE-----\n", b"push-cert-end\n"]
    return b"".join(encode(line) for line in [*lines, *after]) + FLUSH + PACK


def test_g7_a_signed_push_is_judged_by_the_commands_it_certifies() -> None:
    head, reader = read(cert([f"{A} {B} {MINE}"]))
    assert head is not None and head.signed and head.refs == (MINE,)
    check_push(head, BRANCH)
    assert reader.pack_start == PACK
    other, _ = read(cert([f"{A} {B} {MINE}", f"{A} {B} refs/heads/main"]))
    assert other is not None
    with pytest.raises(PushRefused):
        check_push(other, BRANCH)


def test_g7_commands_outside_the_certificate_are_refused() -> None:
    with pytest.raises(PushRefused, match="after push-cert-end"):
        read(cert([f"{A} {B} {MINE}"], after=[f"{A} {B} refs/heads/main".encode()]))


def test_pkt_lines_special_packets_and_limits() -> None:
    reader = PktLineReader(v2=True)
    reader.feed(b"0000" + b"0001" + b"0002" + encode(b"hi"))
    assert [reader.next() for _ in range(4)] == [Special.FLUSH, Special.DELIM, Special.RESPONSE_END, b"hi"]
    assert reader.next() is None
    with pytest.raises(PktLineError):
        encode(b"x" * 65520)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(1, 50))
def test_fuzzed_heads_are_refused_or_read_never_crash(noise: bytes, chunk: int) -> None:
    try:
        head, _ = read(noise, chunk)
    except PushRefused:
        return
    if head is not None:  # whatever parses must still face the rule
        try:
            check_push(head, BRANCH)
        except PushRefused:
            return
        assert all(c.ref == MINE and not c.deletes for c in head.commands)


@given(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=60))
def test_no_ref_but_the_exact_session_branch_passes(ref: str) -> None:
    head, _ = read(body(f"{A} {B} {ref}"))
    assert head is not None
    if ref == MINE:
        check_push(head, BRANCH)
    else:
        with pytest.raises(PushRefused):
            check_push(head, BRANCH)
