"""SECURITY-CASES H family (H1-H5) on the gateway's model and git routes, as properties: whatever framing, hop-by-hop
lists and credential headers a sandbox sends, each upstream connection carries exactly one re-serialized request
with exactly one credential, the gateway's (never dropped, never duplicated, never the sandbox's placeholder), and
the body the client's framing said; the credential never comes back to the client."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.egress.harness import RecordingUpstream, framed_request, one_request
from tests.egress.test_smuggling import FRAMED_BODY, FRAMING_MUTATIONS, HOP_NOISE, UPSTREAM_ANSWERS, read_responses
from tests.gateway.test_git_gateway import TOKEN, GatewayHarness, raw

KEY = "sk-ant-PROPERTY-0123456789"
ROUTE = b"/model/anthropic/v1/messages"

_CREDENTIAL_NOISE = st.lists(
    st.sampled_from(
        [
            b"x-api-key: placeholder",
            b"X-API-KEY: placeholder-2",
            b"Authorization: Bearer placeholder",
            b"Connection: x-api-key",
            b"Connection: Authorization, anthropic-version",
            b"anthropic-version: 2023-06-01",
        ]
    ),
    max_size=4,
)
_HIDDEN = st.sampled_from(
    [
        b"",
        b"POST " + ROUTE + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        b"GET /git/acme/other.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /model/anthropic/../git/acme/widgets.git/info/refs HTTP/1.1\r\nHost: x\r\n\r\n",
        b"garbage\r\n\r\n",
    ]
)


@pytest.fixture(scope="module")
def provider() -> Iterator[RecordingUpstream]:
    """The model provider and the git host at once: it only records what reaches it."""
    server = RecordingUpstream()
    yield server
    server.close()


@pytest.fixture(scope="module")
def gateway(provider: RecordingUpstream) -> Iterator[GatewayHarness]:
    url = f"http://127.0.0.1:{provider.port}"
    harness = GatewayHarness(url, models={"anthropic": (url, KEY)})
    yield harness
    harness.close()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    **FRAMED_BODY,
    noise=HOP_NOISE,
    credentials=_CREDENTIAL_NOISE,
    mutation=FRAMING_MUTATIONS,
    hidden=_HIDDEN,
)
def test_each_provider_request_carries_exactly_the_gateways_key_once(
    gateway: GatewayHarness,
    provider: RecordingUpstream,
    payload: bytes,
    use_chunks: bool,
    cuts: list[int],
    noise: list[bytes],
    credentials: list[bytes],
    mutation: bytes | None,
    hidden: bytes,
) -> None:
    message = framed_request(
        b"POST " + ROUTE + b" HTTP/1.1", payload, use_chunks=use_chunks, cuts=cuts, extension=b";x=1",
        headers=[*credentials, *noise], mutation=mutation,
    )  # fmt: skip
    answer, carried = provider.carried(lambda: raw(gateway, message + hidden))
    event(f"{len(carried)} provider connection(s); answered {answer[9:12].decode('latin-1') or 'nothing'}")
    assert len(carried) <= 2
    for number, sent in enumerate(carried):
        request, forwarded = one_request(sent, b"127.0.0.1:%d" % provider.port)
        assert request.target == b"/v1/messages"
        keys = [value for name, value in request.headers if name == b"x-api-key"]
        assert keys == [KEY.encode()], keys  # H4: neither dropped nor duplicated, never the placeholder
        assert b"authorization" not in {name for name, _ in request.headers}
        if number == 0:
            assert forwarded == payload  # what the client's framing said: no more, no less
    if mutation is None:
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert KEY.encode() not in answer


GIT_ROUTE = b"/git/acme/widgets.git/git-upload-pack"
_GIT_CREDENTIAL_NOISE = st.lists(
    st.sampled_from(
        [
            b"Authorization: Basic ZXZpbDpldmls",
            b"authorization: Bearer placeholder",
            b"Connection: Authorization",
            b"Proxy-Authorization: Basic ZXZpbDpldmls",
            b"Cookie: session=sandbox",
            b"Content-Type: application/x-git-upload-pack-request",
            b"Git-Protocol: version=2",
        ]
    ),
    max_size=4,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    **FRAMED_BODY,
    noise=HOP_NOISE,
    credentials=_GIT_CREDENTIAL_NOISE,
    mutation=FRAMING_MUTATIONS,
)
def test_each_git_host_request_carries_exactly_the_gateways_credential_once(
    gateway: GatewayHarness,
    provider: RecordingUpstream,
    payload: bytes,
    use_chunks: bool,
    cuts: list[int],
    noise: list[bytes],
    credentials: list[bytes],
    mutation: bytes | None,
) -> None:
    message = framed_request(
        b"POST " + GIT_ROUTE + b" HTTP/1.1", payload, use_chunks=use_chunks, cuts=cuts,
        headers=[*credentials, *noise], mutation=mutation,
    )  # fmt: skip
    answer, carried = provider.carried(lambda: raw(gateway, message))
    event(f"{len(carried)} git host connection(s); answered {answer[9:12].decode('latin-1') or 'nothing'}")
    assert len(carried) <= 1
    expected = b"Basic " + base64.b64encode(f"x-access-token:{TOKEN}".encode())
    for sent in carried:
        request, forwarded = one_request(sent, b"127.0.0.1:%d" % provider.port)
        assert request.target.endswith(b"/acme/widgets.git/git-upload-pack"), request.target
        values = [value for name, value in request.headers if name == b"authorization"]
        assert values == [expected]  # the gateway's, once; never the sandbox's
        assert b"cookie" not in {name for name, _ in request.headers}
        assert forwarded == payload
    if mutation is None:
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert TOKEN.encode() not in answer and expected not in answer


@pytest.mark.parametrize(("first", "expected"), UPSTREAM_ANSWERS)
def test_a_keep_alive_client_of_the_model_route_gets_exactly_one_response_per_request(
    gateway: GatewayHarness, provider: RecordingUpstream, first: bytes, expected: tuple[int, bytes] | None
) -> None:
    provider.settled()
    provider.answers = [first]  # the first request's provider answers oddly; the second's with a plain 200
    request = b"POST " + ROUTE + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
    answer = raw(gateway, request + request)
    provider.settled()
    assert b"forged" not in answer and KEY.encode() not in answer
    read, complete = read_responses(answer)
    got = [(status, body) for status, _, body in read]
    if expected is None:  # a 502, or a cut the client can see, and nothing after it
        assert (got, complete) in (([], False), ([(502, got[0][1] if got else b"")], True)), answer[:300]
    else:  # then the second request's own answer, never bytes left over from the first provider connection
        assert (got, complete) == ([expected, (200, b"ok")], True), answer[:300]
