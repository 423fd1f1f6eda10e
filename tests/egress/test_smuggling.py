"""SECURITY-CASES H family as properties, through the running proxy to an upstream that records every byte it gets.

Whatever framing a client sends (exact, chunked with extensions and odd splits, conflicting or duplicated framing
headers, hop-by-hop lists naming framing headers, a request hidden after the body), each upstream connection carries
exactly one request, re-serialized (one framing header, no hop-by-hop headers, the URL's host), and nothing after it.
Whatever an upstream answers (conflicting framing, a second response after the first, the proxy's own deny header),
a keep-alive client sees exactly one response per request, so one upstream cannot answer for the next request.
"""

from __future__ import annotations

from collections.abc import Iterator

import h11
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ringfence.egress.proxy import DENY_HEADER, ProxyLimits
from ringfence.egress.rules import EgressPolicy
from ringfence.net.resolve import StaticResolver
from tests.egress.harness import PLAIN_OK, ProxyHarness, RecordingUpstream, framed_request, one_request


@pytest.fixture(scope="module")
def upstream() -> Iterator[RecordingUpstream]:
    server = RecordingUpstream()
    yield server
    server.close()


@pytest.fixture(scope="module")
def proxy() -> Iterator[ProxyHarness]:
    harness = ProxyHarness(
        {"s1": (EgressPolicy.build("full"), ProxyLimits(new_per_second=1e6, new_burst=10**6))},
        ranges=["127.0.0.1/32"],
        resolver=StaticResolver({"ok.example": ["127.0.0.1"]}),
    )
    yield harness
    harness.close()


# A body and how it is framed: by its length, or in chunks cut at these offsets.
FRAMED_BODY = {
    "payload": st.binary(max_size=200),
    "use_chunks": st.booleans(),
    "cuts": st.lists(st.integers(0, 400), max_size=5),
}
HOP_NOISE = st.lists(
    st.sampled_from(
        [
            b"Connection: close",
            b"Connection: keep-alive, X-Hop",
            b"Connection: Content-Length",
            b"Connection: Transfer-Encoding",
            b"Connection: Host, Authorization",
            b"X-Hop: drop me",
            b"Proxy-Connection: keep-alive",
            b"Proxy-Authorization: Basic c2VjcmV0",
            b"Keep-Alive: timeout=5",
            b"TE: trailers",
            b"Trailer: X-After",
            b"X-Ringfence-Session: other",
            b"X-Ringfence-Deny: forged",
            b"Expect: 100-continue",
        ]
    ),
    max_size=4,
)
# Framing that a strict proxy must refuse or normalize, never pass on ambiguously.
FRAMING_MUTATIONS = st.sampled_from(
    [
        None,
        b"Content-Length: 0",
        b"Content-Length: 99999",
        b"Transfer-Encoding: chunked",
        b"Transfer-Encoding: gzip, chunked",
        b"Transfer-Encoding: chunked, chunked",
        b"Transfer-Encoding: identity",
        b"Content-Length: 00",
        b"Content-Length : 3",
        b"content-length: 3",
        b"X: a\r\n b",
        b"X: a\nContent-Length: 1",
        b"Transfer-Encoding:\tchunked",
        b"Transfer-Encoding: \x0bchunked",
    ]
)
HIDDEN_AFTER_BODY = st.sampled_from(
    [
        b"",
        b"GET /admin HTTP/1.1\r\nHost: ok.example\r\n\r\n",
        b"GET http://ok.example:{port}/second HTTP/1.1\r\nHost: x\r\n\r\n",
        b"0\r\n\r\nGET /after-chunks HTTP/1.1\r\nHost: x\r\n\r\n",
        b"garbage\r\n\r\n",
    ]
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    **FRAMED_BODY,
    extension=st.sampled_from([b"", b";ext=1", b";a=b;c"]),
    noise=HOP_NOISE,
    mutation=FRAMING_MUTATIONS,
    hidden=HIDDEN_AFTER_BODY,
    host=st.sampled_from([b"x", b"evil.example", b"127.0.0.1:1", b""]),  # the URL's authority is what counts
)
def test_each_upstream_connection_carries_exactly_one_reserialized_request(
    proxy: ProxyHarness,
    upstream: RecordingUpstream,
    payload: bytes,
    use_chunks: bool,
    cuts: list[int],
    extension: bytes,
    noise: list[bytes],
    mutation: bytes | None,
    hidden: bytes,
    host: bytes,
) -> None:
    port = upstream.port
    start = b"POST http://ok.example:%d/up HTTP/1.1" % port
    raw = framed_request(
        start, payload, use_chunks=use_chunks, cuts=cuts, extension=extension, headers=noise, mutation=mutation,
        host=host,
    )  # fmt: skip
    raw += hidden.replace(b"{port}", b"%d" % port)
    answer, carried = upstream.carried(lambda: proxy.exchange(raw, timeout=10))
    requests = [one_request(sent, b"ok.example:%d" % port) for sent in carried]
    event(f"{len(carried)} upstream connection(s); answered {answer[9:12].decode('latin-1') or 'nothing'}")
    # At most the request and, when its end was unambiguous, the one that followed it (checked afresh).
    assert len(carried) <= 2
    assert all(request.target in (b"/up", b"/second") for request, _ in requests)
    if requests and requests[0][0].target == b"/up":
        assert requests[0][1] == payload  # what the client's framing said: no more, no less
    if mutation is None:
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


# (what the first request's upstream answers, what the client must read for it: None for "a 502 or a cut").
UPSTREAM_ANSWERS = [
    pytest.param(PLAIN_OK, (200, b"ok"), id="plain"),
    pytest.param(PLAIN_OK + b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil", (200, b"ok"), id="second-response"),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n\r\nevil",
        (200, b"ok"),
        id="response-after-chunks",
    ),
    pytest.param(PLAIN_OK + b"\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", (200, b"ok"), id="204-after-blank-lines"),
    # RFC 9112 6.3: the coding frames the body, and the length is removed before forwarding.
    pytest.param(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nevil\r\n0\r\n\r\n",
        (200, b"evil"),
        id="length-and-chunked",
    ),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 4\r\n\r\nevil", None, id="two-lengths"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nok", None, id="short-body"),
    # 204 never has a body: the length it wrongly carries is not passed on (a client believing it would read the
    # next response as this one's body); a 304 keeps its length, which describes the representation.
    pytest.param(b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nevil!", (204, b""), id="204-with-length"),
    pytest.param(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", (304, b""), id="304-with-length"),
    pytest.param(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nframes",
        None,
        id="unasked-101",
    ),
    pytest.param(b"garbage\r\n\r\n", None, id="not-http"),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Ringfence-Deny: forged\r\n\r\nok", (200, b"ok"), id="deny"
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive, X-Ringfence-Deny\r\n\r\nok",
        (200, b"ok"),
        id="deny-listed-in-connection",
    ),
    pytest.param(b"HTTP/1.1 100 Continue\r\n\r\n" + PLAIN_OK, (200, b"ok"), id="100-continue"),
    pytest.param(
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\nX-Ringfence-Deny: forged\r\n\r\n" + PLAIN_OK,
        (200, b"ok"),
        id="103-early-hints",
    ),
    pytest.param(b"HTTP/1.1 200 OK\r\n\r\nok until close", (200, b"ok until close"), id="framed-by-close"),
    pytest.param(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", (200, b"ok"), id="http-1.0"),
    pytest.param(b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", (200, b"ok"), id="bare-lf"),
]


@pytest.mark.parametrize(("first", "expected"), UPSTREAM_ANSWERS)
def test_a_keep_alive_client_gets_exactly_one_response_per_request(
    proxy: ProxyHarness, upstream: RecordingUpstream, first: bytes, expected: tuple[int, bytes] | None
) -> None:
    port = upstream.port
    upstream.settled()
    upstream.answers = [first]  # the first request's upstream answers oddly; the second's with a plain 200
    answer = proxy.exchange(
        b"".join(b"GET http://ok.example:%d/%s HTTP/1.1\r\nHost: x\r\n\r\n" % (port, n) for n in (b"one", b"two")),
        timeout=10,
    )
    upstream.settled()
    responses, complete = read_responses(answer)
    assert b"forged" not in answer  # an upstream's deny header is never passed on, not even on an interim answer
    for status, headers, _ in responses:
        # An upstream cannot speak for the proxy: its deny header only ever comes on the proxy's own refusals.
        assert DENY_HEADER.lower().encode() not in headers or status == 502, answer[:300]
    read = [(status, body) for status, _, body in responses]
    if expected is None:  # the proxy stops at the bad answer (a 502, or a cut the client can see) and goes no further
        assert (read, complete) in (([], False), ([(502, read[0][1] if read else b"")], True)), answer[:300]
    else:  # then the second request's own answer, never bytes left over from the first upstream, then nothing
        assert (read, complete) == ([expected, (200, b"ok")], True), answer[:300]
        if expected[0] == 204:
            assert b"content-length" not in responses[0][1], answer[:300]


def read_responses(answer: bytes) -> tuple[list[tuple[int, set[bytes], bytes]], bool]:
    """The complete responses a keep-alive client reads from `answer` for its two GETs, and whether the bytes
    ended cleanly after them (False: a framing error, a close mid-response, or bytes nobody asked for)."""
    parser = h11.Connection(h11.CLIENT)
    parser.send(h11.Request(method="GET", target="/one", headers=[("Host", "x")]))
    parser.send(h11.EndOfMessage())
    parser.receive_data(answer)
    parser.receive_data(b"")
    responses: list[tuple[int, set[bytes], bytes]] = []
    status, headers, body = 0, set[bytes](), b""
    while True:
        try:
            event = parser.next_event()
        except h11.RemoteProtocolError:
            return responses, False
        if isinstance(event, h11.Response):
            status, headers, body = event.status_code, {name for name, _ in event.headers}, b""
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            responses.append((status, headers, body))
            if len(responses) == 2 or parser.their_state is not h11.DONE:
                extra, _ = parser.trailing_data
                return responses, not extra
            parser.start_next_cycle()
            parser.send(h11.Request(method="GET", target="/two", headers=[("Host", "x")]))
            parser.send(h11.EndOfMessage())
        elif isinstance(event, h11.ConnectionClosed):
            return responses, True
        elif event is h11.NEED_DATA:
            return responses, False
