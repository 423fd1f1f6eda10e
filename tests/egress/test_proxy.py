"""SECURITY-CASES E and H families against a real proxy on loopback (tests/egress/harness.py): every refusal has a
reason and exactly one audit record, and nothing is forwarded before the decision."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ringfence.egress.proxy import DENY_HEADER, ProxyLimits
from ringfence.egress.rules import EgressPolicy
from ringfence.net.resolve import StaticResolver
from tests.egress.harness import (
    ProxyHarness,
    RawUpstream,
    SequenceResolver,
    client_hello,
    header,
    read_all,
    status_of,
)

FULL = EgressPolicy.build("full")


def harness(policy: EgressPolicy = FULL, limits: ProxyLimits | None = None, **kwargs: Any) -> ProxyHarness:
    return ProxyHarness({"s1": (policy, limits or ProxyLimits())}, **kwargs)


def connect(proxy: ProxyHarness, target: str, extra: bytes = b"") -> bytes:
    return proxy.exchange(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode() + extra)


E1_E6 = [
    # E1 loopback in every spelling
    "127.0.0.1:80", "127.255.255.254:80", "localhost:80", "LOCALHOST.:80", "[::1]:80", "[0:0:0:0:0:0:0:1]:80",
    # E2 metadata
    "169.254.169.254:80", "metadata.google.internal:80", "100.100.100.200:80", "168.63.129.16:80",
    "192.0.0.192:80", "[fd00:ec2::254]:80", "169.254.170.2:80",
    # E3 numeric encodings, decided on the address they mean
    "2130706433:80", "0x7f000001:80", "0x7f.1:80", "0177.0.0.1:80", "127.1:80", "0:80", "017700000001:80",
    # E4 unspecified
    "0.0.0.0:80", "[::]:80",
    # E5 IPv6 forms embedding IPv4
    "[::ffff:127.0.0.1]:80", "[::ffff:7f00:1]:80", "[64:ff9b::a9fe:a9fe]:80", "[2002:a9fe:a9fe::1]:80",
    "[2001:0:4136:e378:8000:63bf:3fff:fdd2]:80", "[::127.0.0.1]:80", "[::ffff:10.0.0.1]:80", "[64:ff9b::7f00:1]:80",
    # E6 special ranges
    "10.0.0.1:80", "172.16.5.4:80", "172.31.255.255:80", "192.168.1.1:80", "[fc00::1]:80", "[fd12:3456::1]:80",
    "100.64.0.1:80", "100.127.255.254:80", "169.254.1.1:80", "[fe80::1]:80", "224.0.0.1:80", "239.255.255.250:80",
    "[ff02::1]:80", "255.255.255.255:80", "240.0.0.1:80", "198.18.0.1:80", "198.19.255.255:80", "192.0.2.1:80",
    "198.51.100.1:80", "203.0.113.9:80", "[2001:db8::1]:80", "[100::1]:80",
    # E7 names that resolve inside
    "inside.example:80",
]  # fmt: skip


@pytest.mark.parametrize("target", E1_E6)
def test_e1_to_e7_non_public_addresses_are_refused_in_mode_full(open_proxy: ProxyHarness, target: str) -> None:
    answer = connect(open_proxy, target)
    assert status_of(answer) == 403, answer
    assert header(answer, DENY_HEADER)
    [record] = open_proxy.wait_records(1)
    assert record["decision"] == "deny" and "address" not in record
    assert record["rule"].startswith("address:") or record["rule"] == "name:local"  # localhost: by name (item 9)


LOCAL_NAMES = ["localhost", "LOCALHOST.", "localhost.", "LocalHost", "a.localhost", "x.y.LOCALHOST.",
               "metadata.google.internal", "METADATA.GOOGLE.INTERNAL.", "metadata", "Metadata.", "instance-data",
               "instance-data.ec2.internal"]  # fmt: skip
MODES = {
    "none": EgressPolicy.build("none"),
    "trusted": EgressPolicy.build("trusted"),
    "custom-allowing-them": EgressPolicy.build("custom", ["localhost", "a.localhost", "metadata", "instance-data",
                                                          "metadata.google.internal", "instance-data.ec2.internal"]),
    "full": FULL,
    "report": EgressPolicy.build("none", report=True),
}  # fmt: skip


@pytest.mark.parametrize("mode", list(MODES))
def test_names_local_by_definition_are_refused_by_name_before_any_lookup_in_every_mode(mode: str) -> None:
    resolver = SequenceResolver({name.lower().rstrip("."): [["127.0.0.1"]] * 4 for name in LOCAL_NAMES})
    proxy = harness(MODES[mode], resolver=resolver)
    try:
        for name in LOCAL_NAMES:
            answer = connect(proxy, f"{name}:80")
            assert status_of(answer) == 403, (name, answer)
            assert "by definition" in (header(answer, DENY_HEADER) or "") or "metadata" in (
                header(answer, DENY_HEADER) or ""
            )
            plain = proxy.exchange(f"GET http://{name}/ HTTP/1.1\r\nHost: {name}\r\n\r\n".encode())
            assert status_of(plain) == 403, (name, plain)
        records = proxy.wait_records(2 * len(LOCAL_NAMES))
        assert {(r["decision"], r["rule"]) for r in records} == {("deny", "name:local")}
        assert resolver.calls == {}  # no lookup of any of them
    finally:
        proxy.close()


def test_e5_zone_ids_are_refused(open_proxy: ProxyHarness) -> None:
    answer = connect(open_proxy, "[fe80::1%25eth0]:80")
    assert status_of(answer) == 400 and "zone id" in (header(answer, DENY_HEADER) or "")


def test_e7_mixed_answers_dial_only_the_safe_one_and_say_which(upstream: RawUpstream) -> None:
    proxy = harness(
        ranges=["127.0.0.2/32"],
        resolver=StaticResolver({"mixed.example": ["127.0.0.1", "10.0.0.9", "127.0.0.2"]}),
    )
    safe = RawUpstream("127.0.0.2")
    try:
        answer = connect(proxy, f"mixed.example:{safe.port}", b"ping")
        assert status_of(answer) == 200 and answer.endswith(b"ping")
        [record] = proxy.wait_records(1)
        assert record["address"] == "127.0.0.2"
        assert record["answers"] == ["127.0.0.1 loopback", "10.0.0.9 private", "127.0.0.2 loopback"]
    finally:
        safe.close()
        proxy.close()


def test_e8_dns_rebinding_the_address_checked_is_the_address_dialed() -> None:
    """First answer allowed, second loopback: each attempt resolves once and dials what it checked."""
    allowed = RawUpstream("127.0.0.2")
    resolver = SequenceResolver({"rebind.example": [["127.0.0.2"], ["127.0.0.1"]]})
    proxy = harness(ranges=["127.0.0.2/32"], resolver=resolver)
    try:
        first = connect(proxy, f"rebind.example:{allowed.port}", b"one")
        second = connect(proxy, f"rebind.example:{allowed.port}", b"two")
        assert status_of(first) == 200 and first.endswith(b"one")
        assert status_of(second) == 403  # the rebound answer is judged, not trusted from before
        records = proxy.wait_records(2)
        assert [r.get("address") for r in records] == ["127.0.0.2", None]
        assert resolver.calls["rebind.example"] == 2
    finally:
        allowed.close()
        proxy.close()


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("ok.example", 400),  # E10: missing port
        ("ok.example:0", 400),
        ("ok.example:65536", 400),
        ("ok.example:-1", 400),
        ("ok.example:8o", 400),
        ("ok.example:", 400),
        ("user@ok.example:443", 400),  # E11 request-target tricks
        ("ok.example:443@evil.example:443", 400),
        ("[ok.example]:443", 400),
        ("/index.html", 400),
        ("ok.example:443/path", 400),
        ("ok%2eexample:443", 400),  # E9 escapes and control bytes in a host
        ("ok.example%00.evil:443", 400),
        ("ok..example:443", 400),
        ("-ok.example:443", 400),
        ("a" * 300 + ".example:443", 400),
    ],
)
def test_e9_to_e11_malformed_targets_are_refused(target: str, status: int) -> None:
    proxy = harness(EgressPolicy.build("custom", ["ok.example"]))
    try:
        answer = connect(proxy, target)
        assert status_of(answer) == status, answer
        [record] = proxy.wait_records(1)
        assert record["decision"] == "deny" and record["rule"] in ("target", "http:parse")
    finally:
        proxy.close()


@pytest.mark.parametrize(
    ("target", "allowed"),
    [
        ("a.example.com:{port}", True),
        ("A.EXAMPLE.COM.:{port}", True),
        ("x.y.example.com:{port}", True),
        ("example.com:{port}", False),
        ("evilexample.com:{port}", False),
        ("example.com.evil.net:{port}", False),
        ("xn--bcher-kva.example.com:{port}", True),  # IDN arrives in punycode (request lines are ASCII)
        ("bücher.example.com:{port}", False),  # raw UTF-8 in a request line is malformed HTTP: 400
    ],
)
def test_e9_host_matching_through_the_proxy(upstream: RawUpstream, target: str, allowed: bool) -> None:
    names = ["a.example.com", "x.y.example.com", "example.com", "evilexample.com", "example.com.evil.net"]
    table = {n: ["127.0.0.1"] for n in names} | {"xn--bcher-kva.example.com": ["127.0.0.1"]}
    proxy = harness(
        EgressPolicy.build("custom", ["*.example.com"]), ranges=["127.0.0.1/32"], resolver=StaticResolver(table)
    )
    try:
        answer = connect(proxy, target.format(port=upstream.port), b"hi")
        assert (status_of(answer) == 200) == allowed, answer
        [record] = proxy.wait_records(1)
        if record.get("rule") != "http:parse":
            assert record["host"] == target.split(":")[0].lower().rstrip(".")
    finally:
        proxy.close()


def test_e10_ports_can_be_restricted(upstream: RawUpstream) -> None:
    proxy = harness(
        EgressPolicy.build("custom", ["ok.example:443"]),
        ranges=["127.0.0.1/32"],
        resolver=StaticResolver({"ok.example": ["127.0.0.1"]}),
    )
    try:
        assert status_of(connect(proxy, f"ok.example:{upstream.port}")) == 403
    finally:
        proxy.close()


def test_e11_absolute_form_checks_and_dials_the_url_authority_not_the_host_header(web: Any) -> None:
    port = web.server_address[1]
    proxy = harness(
        EgressPolicy.build("custom", [f"ok.example:{port}"]),
        ranges=["127.0.0.1/32"],
        resolver=StaticResolver({"ok.example": ["127.0.0.1"], "evil.example": ["127.0.0.1"]}),
    )
    try:
        good = proxy.exchange(
            f"GET http://ok.example:{port}/x HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n".encode()
        )
        assert status_of(good) == 200
        seen = json.loads(good.split(b"\r\n\r\n", 1)[1])
        assert ["Host", f"ok.example:{port}"] in seen["headers"]  # the URL's authority, re-serialized
        bad = proxy.exchange(f"GET http://evil.example:{port}/x HTTP/1.1\r\nHost: ok.example:{port}\r\n\r\n".encode())
        assert status_of(bad) == 403
    finally:
        proxy.close()


def test_e12_keep_alive_requests_are_each_checked_afresh(web: Any) -> None:
    port = web.server_address[1]
    proxy = harness(
        EgressPolicy.build("custom", [f"ok.example:{port}"]),
        ranges=["127.0.0.1/32"],
        resolver=StaticResolver({"ok.example": ["127.0.0.1"], "other.example": ["127.0.0.1"]}),
    )
    try:
        both = proxy.exchange(
            (
                f"GET http://ok.example:{port}/1 HTTP/1.1\r\nHost: ok.example\r\n\r\n"
                f"GET http://other.example:{port}/2 HTTP/1.1\r\nHost: ok.example\r\n\r\n"
            ).encode()
        )
        assert both.count(b"HTTP/1.1 200") == 1 and b"HTTP/1.1 403" in both
        records = proxy.wait_records(2)
        assert [r["decision"] for r in records] == ["allow", "deny"]
    finally:
        proxy.close()


@pytest.fixture
def tls_proxy(upstream: RawUpstream) -> Iterator[ProxyHarness]:
    proxy = harness(
        EgressPolicy.build("custom", ["tls.example", "other.example", "127.0.0.1"]),
        ProxyLimits(tls_ports=frozenset({upstream.port})),
        ranges=["127.0.0.1/32"],
        resolver=StaticResolver({"tls.example": ["127.0.0.1"], "other.example": ["127.0.0.1"]}),
    )
    yield proxy
    proxy.close()


def test_e13_matching_sni_passes_and_the_hello_is_forwarded_intact(
    tls_proxy: ProxyHarness, upstream: RawUpstream
) -> None:
    hello = client_hello("tls.example")
    answer = connect(tls_proxy, f"tls.example:{upstream.port}", hello)
    assert status_of(answer) == 200 and answer.endswith(hello)
    [record] = tls_proxy.wait_records(1)
    assert record["sni"] == "tls.example" and record["bytes_up"] == len(hello)


@pytest.mark.parametrize(
    ("target", "payload", "rule"),
    [
        ("tls.example", lambda: client_hello("other.example"), "tls:sni"),
        ("tls.example", lambda: client_hello(None), "tls:no-sni"),
        ("tls.example", lambda: b"GET / HTTP/1.1\r\nHost: tls.example\r\n\r\n", "tls:protocol"),
        ("tls.example", lambda: b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00", "tls:protocol"),
        ("other.example", lambda: client_hello("tls.example"), "tls:sni"),
    ],
)
def test_e13_tls_mismatches_are_refused_before_anything_is_forwarded(
    tls_proxy: ProxyHarness, upstream: RawUpstream, target: str, payload: Any, rule: str
) -> None:
    answer = connect(tls_proxy, f"{target}:{upstream.port}", payload())
    assert status_of(answer) == 200  # the tunnel was accepted, then closed: nothing went through
    assert answer.endswith(b"\r\n\r\n")
    [record] = tls_proxy.wait_records(1)
    assert record["rule"] == rule and record["decision"] == "deny"
    time.sleep(0.1)
    assert all(not got for got in upstream.received)


def test_e13_ip_literal_tls_only_with_an_exact_rule(upstream: RawUpstream) -> None:
    for allow, ok in ((["127.0.0.1"], True), (["*.example.com"], False)):
        proxy = harness(
            EgressPolicy.build("custom", allow) if allow != ["*.example.com"] else FULL,
            ProxyLimits(tls_ports=frozenset({upstream.port})),
            ranges=["127.0.0.1/32"],
        )
        try:
            connect(proxy, f"127.0.0.1:{upstream.port}", client_hello("tls.example"))
            [record] = proxy.wait_records(1)
            assert (record["decision"] == "allow") == ok, record
        finally:
            proxy.close()


@pytest.mark.parametrize("scheme", ["gopher", "file", "ftp", "dict", "https", "ws"])
def test_e14_other_schemes_are_refused(scheme: str) -> None:
    proxy = harness()
    try:
        answer = proxy.exchange(f"GET {scheme}://ok.example/x HTTP/1.1\r\nHost: ok.example\r\n\r\n".encode())
        assert status_of(answer) == 400 and "scheme" in (header(answer, DENY_HEADER) or "")
    finally:
        proxy.close()


def test_e15_redirects_are_returned_not_followed_and_e17_deny_header_is_stripped(web: Any) -> None:
    port = web.server_address[1]
    proxy = harness(ranges=["127.0.0.1/32"], resolver=StaticResolver({"ok.example": ["127.0.0.1"]}))
    try:
        redirect = proxy.exchange(f"GET http://ok.example:{port}/redirect HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert status_of(redirect) == 302 and header(redirect, "Location") == "http://elsewhere.example/"
        spoofed = proxy.exchange(
            f"GET http://ok.example:{port}/deny HTTP/1.1\r\nHost: x\r\nX-Ringfence-Session: s2\r\n\r\n".encode()
        )
        assert status_of(spoofed) == 200 and header(spoofed, DENY_HEADER) is None
        seen = json.loads(spoofed.split(b"\r\n\r\n", 1)[1])
        assert not any(name.lower().startswith("x-ringfence") for name, _ in seen["headers"])
        records = proxy.wait_records(2)
        assert {r["session"] for r in records} == {"s1"}  # identity is the listener, whatever the headers say
    finally:
        proxy.close()


def test_e16_the_proxy_never_dials_itself_even_inside_an_allowed_range() -> None:
    proxy = harness(ranges=["127.0.0.0/8"])
    try:
        answer = connect(proxy, f"127.0.0.1:{proxy.port}")
        assert status_of(answer) == 403 and "ringfence's own endpoints" in (header(answer, DENY_HEADER) or "")
    finally:
        proxy.close()


def test_e16_host_interface_addresses_are_refused() -> None:
    proxy = harness(host_addresses=["198.51.100.77"])  # stands in for this host's own public address
    try:
        answer = connect(proxy, "198.51.100.77:80")
        assert status_of(answer) == 403
    finally:
        proxy.close()


def test_e18_limits_answer_with_a_reason() -> None:
    proxy = harness(limits=ProxyLimits(max_request_line=256, max_header_bytes=4096, header_timeout=0.5))
    try:
        long_line = proxy.exchange(b"GET http://ok.example/" + b"a" * 1000 + b" HTTP/1.1\r\n\r\n")
        assert status_of(long_line) == 414
        big_head = proxy.exchange(b"GET http://ok.example/ HTTP/1.1\r\nHost: x\r\nX-A: " + b"b" * 8000 + b"\r\n\r\n")
        assert status_of(big_head) == 431
        with socket.create_connection(("127.0.0.1", proxy.port), 5) as slow:
            slow.sendall(b"GET http://ok.example/ HTTP/1.1\r\nX-Slow: 1\r\n")  # and never finishes (slowloris)
            assert status_of(read_all(slow)) == 408
        for record in proxy.wait_records(3):
            assert record["rule"].startswith("limit:")
    finally:
        proxy.close()


def test_e18_new_connection_rate_and_concurrency(upstream: RawUpstream) -> None:
    proxy = harness(limits=ProxyLimits(new_per_second=0.001, new_burst=3, max_concurrent=2), ranges=["127.0.0.1/32"])
    try:
        held = []
        for _ in range(2):
            sock = socket.create_connection(("127.0.0.1", proxy.port), 5)
            sock.sendall(f"CONNECT 127.0.0.1:{upstream.port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert status_of(sock.recv(1000)) == 200
            held.append(sock)
        third = connect(proxy, f"127.0.0.1:{upstream.port}")
        assert status_of(third) == 429 and "already open" in (header(third, DENY_HEADER) or "")
        for sock in held:
            sock.close()
        time.sleep(0.2)
        fourth = connect(proxy, f"127.0.0.1:{upstream.port}")
        assert status_of(fourth) == 429 and "per second" in (header(fourth, DENY_HEADER) or "")
    finally:
        proxy.close()


@pytest.mark.parametrize(
    "target",
    [
        "evil\x1b[31m.example:80",
        'q"uote.example:80',
        "x" * 300 + ":80",
        "crlf.example\r\nX-Injected: 1:80",
    ],
)
def test_e19_hostile_targets_keep_every_record_one_json_object(target: str) -> None:
    proxy = harness(EgressPolicy.build("custom"))
    try:
        proxy.exchange(f"CONNECT {target} HTTP/1.1\r\n\r\n".encode("latin-1"))
        for record in proxy.wait_records(1):
            line = json.dumps(record)
            assert "\n" not in line and "\x1b" not in line and json.loads(line) == record
    finally:
        proxy.close()


def test_e20_report_mode_allows_and_records_would_deny_but_address_checks_still_apply(upstream: RawUpstream) -> None:
    policy = EgressPolicy.build("custom", report=True)
    proxy = harness(
        policy,
        ranges=["127.0.0.1/32"],
        resolver=StaticResolver({"x.example": ["127.0.0.1"], "y.example": ["10.0.0.1"]}),
    )
    try:
        allowed = connect(proxy, f"x.example:{upstream.port}", b"hi")
        assert status_of(allowed) == 200
        refused = connect(proxy, f"y.example:{upstream.port}")
        assert status_of(refused) == 403
        first, second = proxy.wait_records(2)
        assert first["decision"] == "would_deny" and "would deny" in first["reason"]
        assert second["decision"] == "deny" and second["rule"] == "address:private"
    finally:
        proxy.close()


def test_one_audit_record_per_attempt_with_bytes_and_times(upstream: RawUpstream) -> None:
    proxy = harness(ranges=["127.0.0.1/32"], resolver=StaticResolver({"ok.example": ["127.0.0.1"]}))
    try:
        payload = b"x" * 100_000
        answer = connect(proxy, f"ok.example:{upstream.port}", payload)
        assert answer.endswith(payload)
        [record] = proxy.wait_records(1)
        for key in ("session", "at", "host", "port", "address", "decision", "rule", "reason", "dns_ms",
                    "connect_ms", "duration_ms"):  # fmt: skip
            assert key in record, key
        assert record["bytes_up"] == len(payload) == record["bytes_down"]
    finally:
        proxy.close()


def test_upstream_failure_is_502() -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    proxy = harness(ranges=["127.0.0.1/32"], resolver=StaticResolver({"ok.example": ["127.0.0.1"]}))
    try:
        answer = connect(proxy, f"ok.example:{port}")
        assert status_of(answer) == 502
        nxdomain = connect(proxy, "nowhere.example:80")
        assert status_of(nxdomain) == 502
    finally:
        proxy.close()


_METHODS = st.sampled_from([b"CONNECT", b"GET", b"POST", b"connect", b"GET\x00", b"", b"PRI"])
_TARGETS = st.one_of(
    st.sampled_from([b"ok.example:443", b"http://ok.example/", b"*", b"/", b"[::1]:80", b"a@b:1", b"http://[::1"]),
    st.binary(max_size=40),
)
_HEADERS = st.lists(
    st.tuples(
        st.one_of(
            st.sampled_from([b"Host", b"Content-Length", b"Transfer-Encoding", b"Connection"]), st.binary(max_size=12)
        ),
        st.one_of(st.sampled_from([b"ok.example", b"5", b"chunked", b"close", b""]), st.binary(max_size=20)),
    ),
    max_size=6,
)


@pytest.fixture(scope="module")
def fuzz_proxy() -> Iterator[ProxyHarness]:
    proxy = harness(limits=ProxyLimits(new_per_second=1e6, new_burst=10**6))
    yield proxy
    proxy.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_METHODS, _TARGETS, _HEADERS, st.sampled_from([b"\r\n", b"\n"]), st.binary(max_size=30))
def test_fuzzed_request_heads_get_an_answer_or_a_close_and_one_record(
    fuzz_proxy: ProxyHarness, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], eol: bytes, tail: bytes
) -> None:
    before = len(fuzz_proxy.records)
    head = method + b" " + target + b" HTTP/1.1" + eol + b"".join(n + b": " + v + eol for n, v in headers) + eol
    answer = fuzz_proxy.exchange(head + tail, timeout=10)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 "), answer[:100]
    if answer:
        fuzz_proxy.wait_records(before + 1)  # every answered attempt is audited
    assert status_of(connect(fuzz_proxy, "10.0.0.1:80")) == 403  # and the proxy still serves


def test_switching_policy_cuts_what_the_previous_policy_opened_and_names_the_phase(upstream: RawUpstream) -> None:
    setup = EgressPolicy.build("custom", [f"pkg.example:{upstream.port}"])
    proxy = harness(setup, ranges=["127.0.0.1/32"], resolver=StaticResolver({"pkg.example": ["127.0.0.1"]}))
    try:
        switch = proxy.proxy.set_policy("s1", setup, "setup")
        asyncio.run_coroutine_threadsafe(switch, proxy.loop).result(5)
        with socket.create_connection(("127.0.0.1", proxy.port), 5) as tunnel:
            target = f"pkg.example:{upstream.port}"
            tunnel.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
            assert tunnel.recv(4096).startswith(b"HTTP/1.1 200")
            tunnel.sendall(b"ping")
            assert tunnel.recv(4) == b"ping"  # open under the setup policy
            switch = proxy.proxy.set_policy("s1", EgressPolicy.build("none"), "agent")
            asyncio.run_coroutine_threadsafe(switch, proxy.loop).result(5)
            tunnel.settimeout(5)
            assert read_all(tunnel) == b""  # cut at the switch: nothing the setup opened outlives it
        assert status_of(connect(proxy, f"pkg.example:{upstream.port}")) == 403
        records = proxy.wait_records(2)
        assert [(r["phase"], r["decision"]) for r in records] == [("setup", "allow"), ("agent", "deny")]
    finally:
        proxy.close()
