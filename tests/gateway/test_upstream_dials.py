"""T4: the gateway dials no address the operator's policy refuses. Every upstream (a repository host, a model
provider) goes through ringfence.net's dialer, the egress proxy's address policy with `egress_allow_ranges`: a
repository URL naming loopback, the server's own API, a private or metadata address is refused with a 403 and a
reason, and nothing is sent there (a listener standing in for the operator's internal service sees no connection).
The same check refuses such a URL when it is connected, through the API."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator

import httpx
import pytest

from ringfence.api.app import create_app
from ringfence.net.addresses import AddressPolicy
from ringfence.net.dial import Dialer, check_url
from ringfence.net.resolve import CachingResolver, StaticResolver
from ringfence.store import accounts
from ringfence.store.db import Store
from tests.conftest import T0
from tests.egress.harness import RawUpstream, header, read_all, status_of
from tests.gateway.test_git_gateway import GatewayHarness
from tests.servers import serving

PUBLIC_ONLY = Dialer(AddressPolicy.parse([]), CachingResolver(StaticResolver({})))


class InternalService(RawUpstream):
    """A listener on loopback standing in for the operator's internal service: it counts who connects."""

    accepted = 0

    def _accepted(self, conn: socket.socket) -> None:
        self.accepted += 1
        super()._accepted(conn)


@pytest.fixture
def internal() -> Iterator[InternalService]:
    service = InternalService()
    yield service
    service.close()


def _upload_pack(port: int) -> bytes:
    body = b"0032want 0000000000000000000000000000000000000000\n00000009done\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /git/acme/widgets.git/git-upload-pack HTTP/1.1\r\nHost: g\r\n"
            b"Content-Type: application/x-git-upload-pack-request\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        return read_all(sock)


SPELLINGS = ["http://127.0.0.1:{port}", "http://127.9.9.9:{port}", "http://[::ffff:127.0.0.1]:{port}",
             "http://0.0.0.0:{port}", "http://2130706433:{port}"]  # fmt: skip


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_the_gateway_refuses_a_repository_host_the_policy_refuses_and_sends_it_nothing(
    internal: InternalService, spelling: str
) -> None:
    harness = GatewayHarness(spelling.format(port=internal.port), dialer=PUBLIC_ONLY)
    try:
        answer = _upload_pack(harness.port)
    finally:
        harness.close()
    assert status_of(answer) == 403, answer[:300]
    deny = header(answer, "X-Ringfence-Deny") or ""
    assert "not reachable from this server" in answer.decode(errors="replace") or "address" in deny
    assert internal.accepted == 0
    [record] = [r for r in harness.records if r.get("operation") == "rpc"] or harness.records[-1:]
    assert record["decision"] == "deny"


def test_the_model_route_refuses_a_provider_the_policy_refuses(internal: InternalService) -> None:
    harness = GatewayHarness(
        "http://127.0.0.1:9", models={"anthropic": (f"http://127.0.0.1:{internal.port}", "sk-x")}, dialer=PUBLIC_ONLY
    )
    try:
        with socket.create_connection(("127.0.0.1", harness.port), timeout=10) as sock:
            sock.sendall(
                b"POST /model/anthropic/v1/messages HTTP/1.1\r\nHost: g\r\nContent-Length: 2\r\n"
                b"Connection: close\r\n\r\n{}"
            )
            answer = read_all(sock)
    finally:
        harness.close()
    assert status_of(answer) == 403 and internal.accepted == 0


def test_the_servers_own_endpoints_are_refused_even_inside_an_allowed_range(internal: InternalService) -> None:
    own = (ipaddress.ip_address("127.0.0.1"), internal.port)
    dialer = Dialer(
        AddressPolicy.parse(["127.0.0.0/8"]), CachingResolver(StaticResolver({})), protected=frozenset({own})
    )
    harness = GatewayHarness(f"http://127.0.0.1:{internal.port}", dialer=dialer)
    try:
        answer = _upload_pack(harness.port)
    finally:
        harness.close()
    assert status_of(answer) == 403 and b"own endpoints" in answer and internal.accepted == 0


def test_an_exactly_trusted_endpoint_is_dialed_and_its_neighbours_are_not(internal: InternalService) -> None:
    """The demo's own git host: its address and port exactly, nothing else of loopback."""
    other = InternalService()
    exact = frozenset({(ipaddress.ip_address("127.0.0.1"), internal.port)})
    dialer = Dialer(AddressPolicy.parse([]), CachingResolver(StaticResolver({})), endpoints=exact)
    try:
        trusted = GatewayHarness(f"http://127.0.0.1:{internal.port}", dialer=dialer)
        neighbour = GatewayHarness(f"http://127.0.0.1:{other.port}", dialer=dialer)
        try:
            _upload_pack(trusted.port)
            refused = _upload_pack(neighbour.port)
        finally:
            trusted.close()
            neighbour.close()
        assert internal.accepted == 1 and other.accepted == 0 and status_of(refused) == 403
    finally:
        other.close()


# Checked only, never dialed: these are not addresses a test may send traffic to.
NEVER = ["http://169.254.169.254/a/b", "http://[fd00:ec2::254]/a/b", "http://100.100.100.200/a/b",
         "http://10.0.0.1/a/b", "http://192.168.1.1/a/b", "http://[::1]:8600/a/b", "http://127.0.0.1:8600/a/b",
         "http://0x7f000001/a/b", "http://[::]/a/b"]  # fmt: skip


@pytest.mark.parametrize("url", NEVER)
def test_a_refused_url_is_named_with_its_reason_without_any_connection(url: str) -> None:
    import asyncio

    reason = asyncio.run(check_url(PUBLIC_ONLY, url))
    assert reason is not None and "address" in reason


def test_connecting_a_repository_the_server_may_not_dial_is_refused_with_the_reason(store: Store) -> None:
    user = accounts.create_user(store, "u", T0, actor="t", plan="pro")
    _, token = accounts.create_api_key(store, user.id, "t", T0, actor="t")
    operator = Dialer(AddressPolicy.parse(["127.0.0.1/32"]), CachingResolver(StaticResolver({})))
    auth = {"Authorization": f"Bearer {token.reveal()}"}
    with serving(create_app(store, clock=lambda: T0)) as base:
        for url in ("http://127.0.0.1:8600/acme/widgets", "http://169.254.169.254/a/b", "http://[::1]/a/b"):
            refused = httpx.post(f"{base}/v1/users/{user.id}/repositories", json={"url": url}, headers=auth)
            assert refused.status_code == 422, refused.text
            assert "does not dial it" in refused.json()["error"]["message"]
        public = httpx.post(f"{base}/v1/users/{user.id}/repositories", json={"url": "https://github.com/a/b"},
                            headers=auth)  # fmt: skip
        assert public.status_code == 201  # a name that cannot be resolved here is checked again when dialed
    assert [r.url for r in accounts.list_repositories(store, user.id)] == ["https://github.com/a/b.git"]
    with serving(create_app(store, clock=lambda: T0, dialer=operator)) as base:
        allowed = httpx.post(f"{base}/v1/users/{user.id}/repositories", json={"url": "http://127.0.0.1:9/o/n"},
                             headers=auth)  # fmt: skip
        assert allowed.status_code == 201, allowed.text  # the operator's range allows it


@pytest.mark.parametrize("listen", ["0.0.0.0:{port}", "[::]:{port}", "127.0.0.1:{port}"])
@pytest.mark.parametrize("url", ["http://127.0.0.1:{port}/a/b", "http://127.0.0.2:{port}/a/b", "http://[::1]:{port}/a/b",
                                 "http://0.0.0.0:{port}/a/b"])  # fmt: skip
def test_the_servers_own_listener_is_never_dialed_whatever_address_it_listens_on(listen: str, url: str) -> None:
    """A server listening on every address is reached through loopback too: even where the operator allows
    loopback (a local model server), no upstream may be the server's own port on a local address."""
    import asyncio

    from ringfence.config import load_settings
    from ringfence.sessions.embedded import upstream_dialer

    port = 18600
    config = load_settings({"listen": listen.format(port=port)},
                           environ={"RINGFENCE_EGRESS_ALLOW_RANGES": "127.0.0.0/8,::1/128,0.0.0.0/32"})  # fmt: skip
    dialer = upstream_dialer(config, resolver=StaticResolver({}))
    target = url.format(port=port)
    reason = asyncio.run(check_url(dialer, target))
    if listen.startswith("127.0.0.1") and ("127.0.0.2" in target or "::1" in target):
        assert reason is None  # a listener on 127.0.0.1 alone is not there: the operator's range allows these
    else:
        assert reason is not None and "own endpoints" in reason, (listen, target)
    assert asyncio.run(check_url(dialer, url.format(port=port + 1))) is None  # another local port: the range allows it
