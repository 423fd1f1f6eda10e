"""SECURITY-CASES H family on the proxy's plain-HTTP path: ambiguous framing is refused, never guessed; what is
forwarded is re-serialized from the parsed request (hop-by-hop headers dropped, framing recomputed)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from ringfence.egress.proxy import DENY_HEADER
from ringfence.net.resolve import StaticResolver
from tests.egress.harness import ProxyHarness, status_of


@pytest.fixture
def proxy() -> Iterator[ProxyHarness]:
    from ringfence.egress.proxy import ProxyLimits
    from ringfence.egress.rules import EgressPolicy

    harness = ProxyHarness(
        {"s1": (EgressPolicy.build("full"), ProxyLimits())},
        ranges=["127.0.0.1/32"],
        resolver=StaticResolver({"ok.example": ["127.0.0.1"]}),
    )
    yield harness
    harness.close()


def request(proxy: ProxyHarness, port: int, head: str, body: bytes = b"") -> tuple[int, dict[str, Any] | None]:
    raw = head.replace("{url}", f"http://ok.example:{port}/echo").replace("\n", "\r\n").encode() + body
    answer = proxy.exchange(raw)
    status = status_of(answer)
    if status == 200:
        return status, json.loads(answer.split(b"\r\n\r\n", 1)[1].split(b"\r\n0\r\n")[0].split(b"\r\n", 1)[-1])
    return status, None


H1_H3_REFUSED = [
    "POST {url} HTTP/1.1\nHost: x\nContent-Length: 5\nTransfer-Encoding: chunked\n\n",
    "POST {url} HTTP/1.1\nHost: x\nContent-Length: 5\nContent-Length: 6\n\n",
    "POST {url} HTTP/1.1\nHost: x\nContent-Length: 5, 6\n\n",
    "POST {url} HTTP/1.1\nHost: x\nContent-Length: +5\n\n",
    "POST {url} HTTP/1.1\nHost: x\nContent-Length: -5\n\n",
    "POST {url} HTTP/1.1\nHost: x\nContent-Length: 0x5\n\n",
    "POST {url} HTTP/1.1\nHost: x\nTransfer-Encoding: Chunked, gzip\n\n",
    "POST {url} HTTP/1.1\nHost: x\nTransfer-Encoding: chunked,\n\n",
    "POST {url} HTTP/1.1\nHost: x\nTransfer-Encoding: gzip, chunked\n\n",
    "POST {url} HTTP/1.1\nHost: x\nTransfer-Encoding : chunked\n\n",
    "GET {url} HTTP/1.1\nHost: x\nX-Folded: a\n  b\n\n",  # H2 obs-fold
    "GET {url} HTTP/1.1\nHost: x\nX-Nul: a\x00b\n\n",
    "GET {url} HTTP/1.1\nHost: x\nX\x01Bad: a\n\n",
    "G ET {url} HTTP/1.1\nHost: x\n\n",
    "GET {url} HTTP/1.1\nHost: x\nUpgrade: h2c\nConnection: Upgrade, HTTP2-Settings\n\n",  # H5
    "GET {url} HTTP/1.1\nHost: x\nUpgrade: websocket\nConnection: Upgrade\n\n",
]


@pytest.mark.parametrize("head", H1_H3_REFUSED)
def test_h1_h2_h5_ambiguous_or_malformed_requests_are_refused(proxy: ProxyHarness, web: Any, head: str) -> None:
    status, _ = request(proxy, web.server_address[1], head)
    assert status == 400
    [record] = proxy.wait_records(1)
    assert record["decision"] == "deny"


H3_CHUNKS_REFUSED = [
    b"zz\r\nhello\r\n0\r\n\r\n",  # not hex
    b"-5\r\nhello\r\n0\r\n\r\n",  # negative
    b"ffffffffffffffffffff\r\n",  # oversized
    b"5\r\nhelloXX0\r\n\r\n",  # missing CRLF after the data
]


@pytest.mark.parametrize("body", H3_CHUNKS_REFUSED)
def test_h3_chunk_framing_errors_never_reach_upstream_as_a_valid_request(
    proxy: ProxyHarness, web: Any, body: bytes
) -> None:
    status, echoed = request(
        proxy, web.server_address[1], "POST {url} HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n\n", body
    )
    assert status != 200 or (echoed is not None and echoed["body"] != "hello")
    assert status in (400, 502)


def test_chunked_bodies_are_reframed_and_hop_by_hop_headers_dropped(proxy: ProxyHarness, web: Any) -> None:
    status, echoed = request(
        proxy,
        web.server_address[1],
        "POST {url} HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\nConnection: close, X-Secret-Hop\n"
        "X-Secret-Hop: 1\nProxy-Authorization: Basic abc\nKeep-Alive: 5\nX-Kept: yes\n\n",
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    assert status == 200 and echoed is not None
    assert echoed["body"] == "hello world"
    names = {name.lower() for name, _ in echoed["headers"]}
    assert "x-kept" in names
    assert not names & {"x-secret-hop", "proxy-authorization", "keep-alive", "connection"} - {"connection"}


def test_h4_connection_cannot_drop_host(proxy: ProxyHarness, web: Any) -> None:
    port = web.server_address[1]
    status, echoed = request(proxy, port, "GET {url} HTTP/1.1\nHost: x\nConnection: Host, Authorization\n\n")
    assert status == 200 and echoed is not None
    assert ["Host", f"ok.example:{port}"] in echoed["headers"]


def test_h5_a_pipelined_request_hidden_in_a_body_is_only_a_body(proxy: ProxyHarness, web: Any) -> None:
    hidden = b"GET http://evil.example/ HTTP/1.1\r\nHost: evil.example\r\n\r\n"
    status, echoed = request(
        proxy, web.server_address[1], f"POST {{url}} HTTP/1.1\nHost: x\nContent-Length: {len(hidden)}\n\n", hidden
    )
    assert status == 200 and echoed is not None and echoed["body"] == hidden.decode()
    records = proxy.wait_records(1)
    assert len(records) == 1 and records[0]["host"] == "ok.example"


def test_refusal_bodies_name_the_rule(proxy: ProxyHarness) -> None:
    answer = proxy.exchange(b"GET http://10.0.0.1/ HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(answer) == 403
    body = answer.split(b"\r\n\r\n", 1)[1].decode()
    assert "rule: address:private" in body and "10.0.0.1" in body
    assert DENY_HEADER.encode() in answer
