"""The git route against a real host (`git http-backend` behind a token-checking server) with a real git client:
clone and fetch work, pushes reach only the session branch, the token never reaches the client (G1-G8)."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ringfence.egress.audit import BatchedAudit
from ringfence.gateway.git_proxy import Credential, Gateway, GitSession, ModelUpstream
from ringfence.gateway.pktline import FLUSH, encode
from ringfence.gateway.routes import Repository
from ringfence.net.dial import Dialer
from ringfence.store.crypto import Secret
from tests.egress.harness import read_all, status_of
from tests.gateway.git_host import GitHost, git, loopback_dialer, make_repository

TOKEN = "ghs_TESTTOKEN_1234567890abcdef"
BRANCH = "ringfence/sess_1"


class GatewayHarness:
    def __init__(
        self,
        upstream: str,
        scheme: str = "basic",
        models: dict[str, tuple[str, str]] | None = None,
        api_url: str | None = None,
        recorder: Any = None,
        dialer: Dialer | None = None,
        token_budget: int | None = None,
    ) -> None:
        self.records: list[dict[str, Any]] = []
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

        async def start() -> int:
            self.audit = BatchedAudit(self.records.extend, lambda: datetime.now(UTC).isoformat(), interval=0.01)
            self.audit.start()
            self.gateway = Gateway(self.audit, dialer=dialer or loopback_dialer())
            self.gateway.add_session(
                GitSession(
                    "sess_1",
                    Repository.parse("acme/widgets"),
                    BRANCH,
                    upstream,
                    Credential(scheme, Secret(TOKEN)),  # type: ignore[arg-type]
                    api_url,
                ),
                tuple(
                    ModelUpstream(name, url, Secret(key), recorder=recorder)
                    for name, (url, key) in (models or {}).items()
                ),
                token_budget=token_budget,
            )
            return (await self.gateway.listen_tcp("sess_1", "127.0.0.1", 0))[1]

        self.port = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        self.url = f"http://127.0.0.1:{self.port}/git/acme/widgets.git"

    def close(self) -> None:
        async def stop() -> None:
            await self.gateway.close()
            await self.audit.close()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


@pytest.fixture
def host(tmp_path: Path) -> Iterator[GitHost]:
    root = tmp_path / "host"
    make_repository(root, "acme", "widgets")
    make_repository(root, "acme", "secret-other")
    server = GitHost(root, TOKEN)
    yield server
    server.close()


@pytest.fixture
def gateway(host: GitHost) -> Iterator[GatewayHarness]:
    harness = GatewayHarness(host.url)
    yield harness
    harness.close()


def leaks(text: str) -> bool:
    forms = [
        TOKEN,
        base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode(),
        base64.b64encode(TOKEN.encode()).decode(),
    ]
    return any(form in text for form in forms)


def test_clone_fetch_and_push_to_the_session_branch(gateway: GatewayHarness, host: GitHost, tmp_path: Path) -> None:
    work = tmp_path / "work"
    cloned = git("clone", "-q", gateway.url, str(work))
    assert cloned.returncode == 0, cloned.stderr
    assert (work / "file0.txt").read_text() == "content 0\n"
    git("checkout", "-q", "-b", BRANCH, cwd=work)
    (work / "agent.txt").write_text("made by the agent\n")
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "agent work", cwd=work)
    pushed = git("push", "origin", f"HEAD:refs/heads/{BRANCH}", cwd=work)
    assert pushed.returncode == 0, pushed.stderr
    fetched = git("fetch", "-q", "origin", cwd=work)
    assert fetched.returncode == 0, fetched.stderr
    upstream = git("--git-dir", str(host.root / "acme" / "widgets.git"), "log", "--format=%s", f"refs/heads/{BRANCH}")
    assert upstream.stdout.splitlines()[0] == "agent work"
    assert all(seen.authorized for seen in host.seen)  # the host saw the injected credential every time
    config = git("config", "-l", cwd=work).stdout
    assert not leaks(config + cloned.stderr + pushed.stderr) and "x-access-token" not in config
    assert not any(leaks(p.read_text(errors="ignore")) for p in (work / ".git").rglob("*") if p.is_file())
    kinds = [(r["service"], r["decision"]) for r in gateway.records if "service" in r]
    assert ("git-receive-pack", "allow") in kinds and ("git-upload-pack", "allow") in kinds
    assert not leaks(json.dumps(gateway.records))


@pytest.mark.parametrize(
    "refspec",
    ["HEAD:refs/heads/main", "HEAD:refs/heads/other", "HEAD:refs/tags/v9", f"HEAD:refs/heads/{BRANCH.upper()}",
     "HEAD:refs/notes/commits", f":refs/heads/{BRANCH}"],
)  # fmt: skip
def test_g6_pushes_elsewhere_are_rejected_with_the_reason(
    gateway: GatewayHarness, host: GitHost, tmp_path: Path, refspec: str
) -> None:
    work = tmp_path / "work"
    assert git("clone", "-q", gateway.url, str(work)).returncode == 0
    (work / "x.txt").write_text("x\n")
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "x", cwd=work)
    if refspec.startswith(":"):  # a delete needs the branch to exist first
        assert git("push", "origin", f"HEAD:refs/heads/{BRANCH}", cwd=work).returncode == 0
    before = git("--git-dir", str(host.root / "acme" / "widgets.git"), "for-each-ref").stdout
    pushed = git("push", "origin", refspec, cwd=work)
    assert pushed.returncode != 0
    assert "ringfence" in pushed.stderr and ("may push only to" in pushed.stderr or "deleting" in pushed.stderr)
    after = git("--git-dir", str(host.root / "acme" / "widgets.git"), "for-each-ref").stdout
    assert before == after  # nothing changed upstream
    posts = [s for s in host.seen if s.method == "POST" and s.path.endswith("git-receive-pack")]
    assert len(posts) == (1 if refspec.startswith(":") else 0)  # the refused push never reached the host


def test_g5_other_repositories_are_refused(gateway: GatewayHarness, tmp_path: Path) -> None:
    other = gateway.url.replace("widgets", "secret-other")
    cloned = git("clone", "-q", other, str(tmp_path / "o"))
    assert cloned.returncode != 0 and "403" in cloned.stderr


def raw(gateway: GatewayHarness, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", gateway.port), 10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        return read_all(sock)


def test_g3_a_client_authorization_header_is_replaced(gateway: GatewayHarness, host: GitHost) -> None:
    answer = raw(
        gateway,
        b"GET /git/acme/widgets.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Basic ZXZpbDpldmls\r\nConnection: close\r\n\r\n",
    )
    assert status_of(answer) == 200 and b"refs/heads/main" in answer
    assert host.seen[-1].headers["Authorization"] == host.expected()


def test_an_upstream_401_is_a_502_without_any_challenge(tmp_path: Path) -> None:
    root = tmp_path / "host"
    make_repository(root, "acme", "widgets")
    wrong = GitHost(root, "another-token")
    harness = GatewayHarness(wrong.url)
    try:
        answer = raw(
            harness,
            b"GET /git/acme/widgets.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: x\r\n"
            b"Connection: close\r\n\r\n",
        )
        assert status_of(answer) == 502 and b"WWW-Authenticate" not in answer and not leaks(answer.decode("latin-1"))
    finally:
        harness.close()
        wrong.close()


def push_body(ref: str, caps: bytes = b"report-status side-band-64k") -> bytes:
    command = f"{'a' * 40} {'b' * 40} {ref}".encode() + b"\x00" + caps
    return encode(command) + FLUSH + b"PACK" + b"\x00" * 28


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        (b"Content-Encoding: br\r\n", push_body("refs/heads/main"), 415),  # G8
        (b"Content-Encoding: gzip\r\n", b"not gzip at all", 400),
        (b"", b"0001" + FLUSH, 400),  # G7
        (b"", b"00zz", 400),
        (b"", encode(b"x" * 10), 400),
    ],
)
def test_g7_g8_malformed_or_encoded_pushes(
    gateway: GatewayHarness, host: GitHost, headers: bytes, body: bytes, status: int
) -> None:
    answer = raw(
        gateway,
        b"POST /git/acme/widgets.git/git-receive-pack HTTP/1.1\r\nHost: x\r\nContent-Type: "
        b"application/x-git-receive-pack-request\r\n"
        + headers
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body,
    )
    assert status_of(answer) == status, answer[:300]
    assert not [s for s in host.seen if s.method == "POST"]


def test_g8_a_gzip_push_is_decoded_before_the_check_and_chunked_bodies_are_read_across_chunks(
    gateway: GatewayHarness, host: GitHost
) -> None:
    body = gzip.compress(push_body("refs/heads/main"))
    chunks = b"".join(f"{len(part):x}\r\n".encode() + part + b"\r\n" for part in (body[:7], body[7:20], body[20:]))
    answer = raw(
        gateway,
        b"POST /git/acme/widgets.git/git-receive-pack HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n",
    )
    assert status_of(answer) == 200 and b"ng refs/heads/main ringfence:" in answer
    assert not [s for s in host.seen if s.method == "POST"]


H_HEADS = [
    "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
    "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n",
    "POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    "GET {path} HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n  b\r\n\r\n",
    "GET {path} HTTP/1.1\nHost: x\n\n",
    "GET {path} HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\n\r\n",
    "G ET {path} HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET {path} HTTP/1.1\r\nHost: x\r\nX-Big: " + "a" * 70_000 + "\r\n\r\n",
]


@pytest.mark.parametrize("head", H_HEADS)
def test_h_family_requests_are_refused_by_the_gateway_and_never_reach_the_host(
    gateway: GatewayHarness, host: GitHost, head: str
) -> None:
    path = "/git/acme/widgets.git/git-receive-pack"
    answer = raw(gateway, head.replace("{path}", path).encode("latin-1"))
    assert status_of(answer) in (400, 431), answer[:200]
    assert host.seen == []


def test_g2_g4_redirects_are_returned_not_followed_and_carry_no_credential(tmp_path: Path) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[str] = []

    class Redirecting(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            seen.append(self.path)
            self.send_response(302)
            self.send_header("Location", "http://elsewhere.example/acme/widgets.git/info/refs")
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirecting)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    harness = GatewayHarness(f"http://127.0.0.1:{server.server_address[1]}")
    try:
        answer = raw(
            harness,
            b"GET /git/acme/widgets.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: x\r\n"
            b"Connection: close\r\n\r\n",
        )
    finally:
        harness.close()
        server.shutdown()
        server.server_close()
    assert status_of(answer) == 302 and b"elsewhere.example" in answer
    assert seen == ["/acme/widgets.git/info/refs?service=git-upload-pack"]  # one request: nothing followed
    assert not leaks(answer.decode("latin-1"))
