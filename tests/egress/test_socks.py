"""SOCKS5 (`socks5h://`) on the egress proxy's own listeners: the same decisions, address checks, TLS check and
audit as CONNECT, refusals as SOCKS reply codes, and a strict reader (tests/egress/harness.py runs the proxy)."""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ringfence.egress import socks
from ringfence.egress.proxy import ProxyLimits
from ringfence.egress.rules import EgressPolicy
from ringfence.net.resolve import StaticResolver
from tests.egress.harness import ProxyHarness, RawUpstream, client_hello, http_upstream, read_all
from tests.egress.test_proxy import E1_E6, harness

GREETING = b"\x05\x01\x00"
SUCCESS = socks.reply(socks.SUCCEEDED)


def request(host: str, port: int, command: int = 1) -> bytes:
    """A SOCKS5 request for `host` as a client would send it: IPv4 and IPv6 as addresses, anything else as a name."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return named(host, port, command)
    kind = 1 if address.version == 4 else 4
    return bytes((5, command, 0, kind)) + address.packed + port.to_bytes(2, "big")


def named(host: str, port: int, command: int = 1) -> bytes:
    """A request carrying `host` as a name (address type 3), whatever it looks like."""
    name = host.encode()
    return bytes((5, command, 0, 3, len(name))) + name + port.to_bytes(2, "big")


def split_target(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    return host.strip("[]"), int(port)


def exchange(proxy: ProxyHarness, raw: bytes) -> tuple[bytes, bytes]:
    """Everything at once (the proxy must cope with a client that does not wait): (method choice, the rest)."""
    answer = proxy.exchange(raw)
    return answer[:2], answer[2:]


@pytest.fixture
def allowed(upstream: RawUpstream) -> Iterator[ProxyHarness]:
    """Only up.example (and 127.0.0.1 as a literal) allowed; loopback dialable for the test's upstreams."""
    proxy = harness(
        EgressPolicy.build("custom", ["up.example", "web.example", "127.0.0.1"]),
        ProxyLimits(header_timeout=1.0),
        ranges=["127.0.0.1/32"],
        resolver=StaticResolver(
            {"up.example": ["127.0.0.1"], "web.example": ["127.0.0.1"], "no.example": ["127.0.0.1"]}
        ),
    )
    yield proxy
    proxy.close()


def test_a_socks5h_tunnel_step_by_step_relays_both_ways_and_is_audited(
    allowed: ProxyHarness, upstream: RawUpstream
) -> None:
    with socket.create_connection(("127.0.0.1", allowed.port), 5) as sock:
        sock.sendall(GREETING)
        assert sock.recv(2) == b"\x05\x00"
        sock.sendall(request("up.example", upstream.port))
        assert sock.recv(10) == SUCCESS
        sock.sendall(b"hello")
        assert sock.recv(5) == b"hello"
        sock.shutdown(socket.SHUT_WR)
        assert read_all(sock) == b""
    [record] = allowed.wait_records(1)
    assert record["method"] == "SOCKS5" and record["decision"] == "allow" and record["rule"] == "allow:up.example"
    assert record["host"] == "up.example" and record["port"] == upstream.port and record["address"] == "127.0.0.1"
    assert record["bytes_up"] == 5 and record["bytes_down"] == 5
    assert upstream.received == [b"hello"]


def test_bytes_sent_with_the_request_are_forwarded(allowed: ProxyHarness, upstream: RawUpstream) -> None:
    method, rest = exchange(allowed, GREETING + request("127.0.0.1", upstream.port) + b"early bytes")
    assert method == b"\x05\x00" and rest == SUCCESS + b"early bytes"
    [record] = allowed.wait_records(1)
    assert record["bytes_up"] == len(b"early bytes")


def test_curl_through_socks5h_the_proxy_resolves_the_name() -> None:
    web = http_upstream()
    port = web.server_address[1]
    proxy = harness(
        EgressPolicy.build("custom", ["web.example"]),
        ranges=["127.0.0.1/32"],
        resolver=StaticResolver({"web.example": ["127.0.0.1"], "other.example": ["127.0.0.1"]}),
    )
    try:

        def curl(url: str) -> subprocess.CompletedProcess[str]:
            proxy_url = f"socks5h://127.0.0.1:{proxy.port}"
            argv = ["curl", "-sS", "--max-time", "10", "--noproxy", "", "-x", proxy_url, url]
            return subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)

        ok = curl(f"http://web.example:{port}/through-socks")
        assert ok.returncode == 0, ok.stderr
        assert '"line": "GET /through-socks HTTP/1.1"' in ok.stdout
        refused = curl(f"http://other.example:{port}/")
        assert refused.returncode != 0 and refused.stdout == ""
        records = proxy.wait_records(2)
        assert [(r["host"], r["decision"]) for r in records] == [("web.example", "allow"), ("other.example", "deny")]
        assert records[1]["rule"] == "mode:custom"
    finally:
        proxy.close()
        web.shutdown()
        web.server_close()


@pytest.mark.parametrize("target", E1_E6)
def test_e1_to_e7_non_public_addresses_are_refused_through_socks_too(open_proxy: ProxyHarness, target: str) -> None:
    method, rest = exchange(open_proxy, GREETING + request(*split_target(target)))
    assert method == b"\x05\x00" and rest == socks.reply(socks.NOT_ALLOWED)
    [record] = open_proxy.wait_records(1)
    assert record["method"] == "SOCKS5" and record["decision"] == "deny"
    assert record["rule"].startswith("address:") or record["rule"] == "name:local"  # local names: by name
    assert "address" not in record  # nothing was dialed


@pytest.mark.parametrize("name", ["::1", "::ffff:127.0.0.1", "127.0.0.1", "2130706433", "0x7f.1", "LOCALHOST."])
def test_addresses_sent_as_names_are_decided_on_the_address_they_mean(open_proxy: ProxyHarness, name: str) -> None:
    _, rest = exchange(open_proxy, GREETING + named(name, 80))
    assert rest == socks.reply(socks.NOT_ALLOWED)
    [record] = open_proxy.wait_records(1)
    expected_rule = "name:local" if name == "LOCALHOST." else "address:"  # a local name is refused by name
    assert record["rule"].startswith(expected_rule)
    assert record["host"] in ("::1", "::ffff:7f00:1", "127.0.0.1", "localhost")


PROTOCOL_REFUSALS = [
    # (what the client sends, what it gets back, the rule)
    (b"\x05\x01\x02" + request("127.0.0.1", 80), b"\x05\xff", "socks:auth"),  # username/password only
    (b"\x05\x00", b"\x05\xff", "socks:auth"),  # no methods at all
    (b"\x05\x02\x01\x02", b"\x05\xff", "socks:auth"),  # GSSAPI or password
    (GREETING + request("127.0.0.1", 80, command=2), b"\x05\x00" + socks.reply(7), "socks:command"),  # BIND
    (GREETING + request("127.0.0.1", 80, command=3), b"\x05\x00" + socks.reply(7), "socks:command"),  # UDP
    (GREETING + request("127.0.0.1", 80, command=9), b"\x05\x00" + socks.reply(7), "socks:command"),
    (GREETING + b"\x05\x01\x00\x05\x7f\x00\x00\x01\x00\x50", b"\x05\x00" + socks.reply(8), "socks:address"),
    (GREETING + b"\x05\x01\x01\x01\x7f\x00\x00\x01\x00\x50", b"\x05\x00" + socks.reply(1), "socks:request"),
    (GREETING + b"\x04\x01\x00\x01\x7f\x00\x00\x01\x00\x50", b"\x05\x00" + socks.reply(1), "socks:version"),
    (GREETING + b"\x05\x01\x00\x03\x00\x00\x50", b"\x05\x00" + socks.reply(1), "socks:request"),  # empty name
    (GREETING + b"\x05\x01\x00\x03\x02\xff\xfe\x00\x50", b"\x05\x00" + socks.reply(1), "socks:request"),  # not UTF-8
    (GREETING + request("up.example", 0), b"\x05\x00" + socks.reply(1), "target"),  # port 0
    (GREETING + named("fe80::1%eth0", 80), b"\x05\x00" + socks.reply(1), "target"),  # zone id
    (GREETING + request("user@up.example", 80), b"\x05\x00" + socks.reply(1), "target"),  # userinfo
    (GREETING + request("up.example/x", 80), b"\x05\x00" + socks.reply(1), "target"),
    (GREETING + request("a:b", 80), b"\x05\x00" + socks.reply(1), "target"),  # neither name nor IPv6
    (GREETING + request("up..example", 80), b"\x05\x00" + socks.reply(1), "target"),
    (GREETING + b"\x05\x01\x00\x01\x7f\x00", b"\x05\x00", "socks:closed"),  # cut short
    (b"\x05", b"", "socks:closed"),
]


@pytest.mark.parametrize(("sent", "expected", "rule"), PROTOCOL_REFUSALS)
def test_requests_outside_what_is_served_get_the_right_reply_and_one_record(
    allowed: ProxyHarness, upstream: RawUpstream, sent: bytes, expected: bytes, rule: str
) -> None:
    assert allowed.exchange(sent) == expected
    [record] = allowed.wait_records(1)
    assert record["method"] == "SOCKS5" and record["decision"] == "deny" and record["rule"] == rule, record
    assert "address" not in record
    time.sleep(0.05)
    assert upstream.received == []


def test_policy_refusals_are_not_allowed_and_name_the_rule(allowed: ProxyHarness, upstream: RawUpstream) -> None:
    _, rest = exchange(allowed, GREETING + request("no.example", upstream.port))
    assert rest == socks.reply(socks.NOT_ALLOWED)
    [record] = allowed.wait_records(1)
    assert record["decision"] == "deny" and record["host"] == "no.example" and "not" in record["reason"]
    assert upstream.received == []


def test_unreachable_and_unknown_hosts_have_their_own_codes(allowed: ProxyHarness) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    _, refused = exchange(allowed, GREETING + request("up.example", port))
    assert refused == socks.reply(socks.CONNECTION_REFUSED)
    proxy = harness(EgressPolicy.build("full"), ranges=["127.0.0.1/32"])
    try:
        _, unknown = exchange(proxy, GREETING + request("nowhere.example", 80))
        assert unknown == socks.reply(socks.HOST_UNREACHABLE)
        [record] = proxy.wait_records(1)
        assert record["decision"] == "error" and record["rule"] == "dns"
    finally:
        proxy.close()
    [record] = allowed.wait_records(1)
    assert record["decision"] == "error" and record["rule"] == "upstream"


def test_a_client_that_stalls_in_its_greeting_is_closed_without_a_reply(allowed: ProxyHarness) -> None:
    with socket.create_connection(("127.0.0.1", allowed.port), 5) as sock:
        sock.sendall(b"\x05\x03\x00")  # promises three methods, sends one
        started = time.monotonic()
        assert read_all(sock) == b""
        assert time.monotonic() - started < 4
    [record] = allowed.wait_records(1)
    assert record["rule"] == "limit:header-time" and record["method"] == "SOCKS5"


def test_a_client_that_stalls_in_its_request_gets_a_failure_reply(allowed: ProxyHarness) -> None:
    with socket.create_connection(("127.0.0.1", allowed.port), 5) as sock:
        sock.sendall(GREETING + b"\x05\x01")
        assert read_all(sock) == b"\x05\x00" + socks.reply(socks.GENERAL_FAILURE)
    [record] = allowed.wait_records(1)
    assert record["rule"] == "limit:header-time"


@pytest.fixture
def tls_proxy(upstream: RawUpstream) -> Iterator[ProxyHarness]:
    proxy = harness(
        EgressPolicy.build("custom", ["tls.example", "other.example"]),
        ProxyLimits(tls_ports=frozenset({upstream.port})),
        ranges=["127.0.0.1/32"],
        resolver=StaticResolver({"tls.example": ["127.0.0.1"], "other.example": ["127.0.0.1"]}),
    )
    yield proxy
    proxy.close()


@pytest.mark.parametrize(
    ("server_name", "rule"), [("tls.example", None), ("other.example", "tls:sni"), (None, "tls:no-sni")]
)
def test_e13_the_tls_server_name_is_held_to_the_socks_target(
    tls_proxy: ProxyHarness, upstream: RawUpstream, server_name: str | None, rule: str | None
) -> None:
    hello = client_hello(server_name)
    method, rest = exchange(tls_proxy, GREETING + request("tls.example", upstream.port) + hello)
    assert method == b"\x05\x00"
    [record] = tls_proxy.wait_records(1)
    if rule is None:
        assert rest == SUCCESS + hello and record["sni"] == "tls.example" and record["decision"] == "allow"
    else:
        assert rest == SUCCESS  # accepted, then closed: nothing went through
        assert record["rule"] == rule and record["decision"] == "deny"
        time.sleep(0.1)
        assert all(not got for got in upstream.received)


def test_http_and_socks_clients_share_a_listener_and_keep_alive_still_works(
    allowed: ProxyHarness, upstream: RawUpstream
) -> None:
    web = http_upstream()
    port = web.server_address[1]
    try:
        head = f"GET http://web.example:{port}/a HTTP/1.1\r\nHost: web.example\r\n\r\n"
        two = (head + head.replace("/a", "/b")).encode()
        answer = allowed.exchange(two)
        assert answer.count(b"HTTP/1.0 200") + answer.count(b"HTTP/1.1 200") == 2, answer[:300]
        _, rest = exchange(allowed, GREETING + request("up.example", upstream.port) + b"x")
        assert rest == SUCCESS + b"x"
        methods = [r["method"] for r in allowed.wait_records(3)]
        assert sorted(methods) == ["GET", "GET", "SOCKS5"]
    finally:
        web.shutdown()
        web.server_close()


# -- the reader, for every input --------------------------------------------------------------------------------


@given(st.binary(max_size=300))
def test_the_readers_need_more_parse_or_refuse_never_crash(data: bytes) -> None:
    for reader in (socks.read_greeting, socks.read_request):
        try:
            result = reader(data)
        except socks.SocksError as exc:
            assert exc.reason and exc.rule.startswith("socks:")
            continue
        if result is not None:
            used = result if isinstance(result, int) else result[1]
            assert 0 < used <= len(data)
        else:
            assert len(data) < (socks.MAX_GREETING if reader is socks.read_greeting else socks.MAX_REQUEST)


_HOSTS = st.one_of(
    st.ip_addresses().map(str),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.-", min_size=1, max_size=255),
)


@given(_HOSTS, st.integers(0, 65535), st.binary(max_size=20))
def test_a_request_is_read_exactly_whatever_its_split(host: str, port: int, tail: bytes) -> None:
    raw = request(host, port)
    for cut in range(len(raw)):
        assert socks.read_request(raw[:cut]) is None
    parsed, used = socks.read_request(raw + tail) or (None, 0)
    assert used == len(raw) and parsed is not None
    shown, _, port_text = parsed.authority.rpartition(":")
    assert int(port_text) == port
    assert shown.strip("[]") == (str(ipaddress.ip_address(host)) if _is_ip(host) else host)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@pytest.fixture(scope="module")
def closed_proxy() -> Iterator[ProxyHarness]:
    """Mode none: a fuzzed request that happens to be valid is refused before any dial (tests stay on loopback)."""
    proxy = harness(EgressPolicy.build("none"), ProxyLimits(new_per_second=1e6, new_burst=10**6, header_timeout=2))
    yield proxy
    proxy.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=8), st.binary(max_size=300))
def test_fuzzed_socks_bytes_get_a_reply_or_a_close_and_one_record(
    closed_proxy: ProxyHarness, greeting: bytes, body: bytes
) -> None:
    before = len(closed_proxy.records)
    answer = closed_proxy.exchange(b"\x05" + greeting + body, timeout=10)
    assert answer[:1] in (b"", b"\x05"), answer[:20]
    closed_proxy.wait_records(before + 1)
    assert closed_proxy.records[before]["method"] == "SOCKS5"
    assert closed_proxy.records[before]["decision"] != "allow"
