"""SECURITY-CASES G9: the host API guard passes what a session needs (open a pull request from its branch, read,
comment) and refuses ref, content and merge writes, on REST and GraphQL alike."""

from __future__ import annotations

import json

import pytest

from ringfence.gateway.host_api import judge_api_call
from ringfence.gateway.routes import Repository

REPO = Repository.parse("acme/widgets")
BRANCH = "ringfence/sess_1"


def call(method: str, path: str, body: object = None) -> bool:
    raw = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    return judge_api_call(method, path, raw, REPO, BRANCH).allowed


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/repos/acme/widgets", None),
        ("GET", "/repos/acme/widgets/pulls?state=open", None),
        ("GET", "/repos/acme/widgets/pulls/12/files", None),
        ("POST", "/repos/acme/widgets/pulls", {"title": "t", "head": BRANCH, "base": "main", "body": "b"}),
        ("POST", "/repos/acme/widgets/pulls", {"title": "t", "head": f"acme:{BRANCH}", "base": "main", "draft": True}),
        ("PATCH", "/repos/acme/widgets/pulls/12", {"title": "better"}),
        ("POST", "/repos/acme/widgets/issues/12/comments", {"body": "done"}),
        ("POST", "/graphql", {"query": 'query { repository(owner: "acme", name: "widgets") { id } }'}),
        ("POST", "/graphql", {"query": "{ viewer { login } }"}),
    ],
)
def test_what_a_session_needs_passes(method: str, path: str, body: object) -> None:
    assert call(method, path, body)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/repos/acme/widgets/contents/README.md", {"message": "m", "content": "eA=="}),
        ("DELETE", "/repos/acme/widgets/contents/README.md", {"message": "m", "sha": "a"}),
        ("POST", "/repos/acme/widgets/git/refs", {"ref": "refs/heads/x", "sha": "a"}),
        ("PATCH", "/repos/acme/widgets/git/refs/heads/main", {"sha": "a", "force": True}),
        ("DELETE", "/repos/acme/widgets/git/refs/heads/main", None),
        ("POST", "/repos/acme/widgets/git/commits", {"message": "m", "tree": "a"}),
        ("POST", "/repos/acme/widgets/merges", {"base": "main", "head": BRANCH}),
        ("PUT", "/repos/acme/widgets/pulls/12/merge", {"merge_method": "squash"}),
        ("PATCH", "/repos/acme/widgets/pulls/12", {"state": "closed", "base": "release"}),
        ("PATCH", "/repos/acme/widgets/pulls/12", {"base": "release"}),
        ("POST", "/repos/acme/widgets/pulls", {"title": "t", "head": "main", "base": "release"}),
        ("POST", "/repos/acme/widgets/pulls", {"title": "t", "head": "evil:ringfence/sess_1", "base": "main"}),
        ("POST", "/repos/acme/widgets/pulls", b"not json"),
        ("PATCH", "/repos/acme/widgets", {"default_branch": BRANCH}),
        ("DELETE", "/repos/acme/widgets", None),
        ("PUT", "/repos/acme/widgets/collaborators/evil", None),
        ("POST", "/repos/acme/widgets/hooks", {"config": {"url": "https://evil"}}),
        ("POST", "/repos/acme/widgets/actions/workflows/ci.yml/dispatches", {"ref": "main"}),
        ("PUT", "/repos/acme/widgets/branches/main/protection", None),
        ("GET", "/repos/acme/other", None),
        ("GET", "/repos/acme/widgets/../other", None),
        ("GET", "/repos/acme/widgets%2F..%2Fother", None),
        ("GET", "/repos/ACME/widgets", None),
        ("GET", "/user", None),
        ("GET", "/repos/acme/widgets/actions/secrets", None),
        ("POST", "/graphql", {"query": "mutation { createCommitOnBranch(input: {}) { commit { oid } } }"}),
        ("POST", "/graphql", {"query": 'mutation M { updateRef(input: {refId: "x", oid: "y"}) { clientMutationId } }'}),
        (
            "POST",
            "/graphql",
            {"query": 'mutation { mergePullRequest(input: {pullRequestId: "x"}) { clientMutationId } }'},
        ),
        ("POST", "/graphql", {"query": "query Q { viewer { login } }\nmutation { updateRef(input: {}) { a } }"}),
        ("POST", "/graphql", {"query": "# query\nmutation { deleteRef(input: {}) { a } }"}),
        ("POST", "/graphql", {"query": "subscription { x }"}),
        ("POST", "/graphql", {"query": "query { unterminated"}),
        ("POST", "/graphql", {"query": "fragment F on User { login }"}),
        ("GET", "/graphql?query={viewer{login}}", None),
        ("POST", "/graphql", {"variables": {}}),
    ],
)
def test_g9_ref_content_and_merge_writes_are_refused(method: str, path: str, body: object) -> None:
    assert not call(method, path, body)


def test_the_api_route_forwards_allowed_calls_with_the_token_and_stops_the_rest(tmp_path) -> None:
    import socket
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tests.egress.harness import read_all, status_of
    from tests.gateway.test_git_gateway import TOKEN, GatewayHarness

    seen: list[tuple[str, str, str]] = []

    class Api(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                data = b""
                while size := int(self.rfile.readline().split(b";")[0], 16):
                    data += self.rfile.read(size + 2)[:size]
                self.rfile.readline()
            else:
                data = self.rfile.read(length)
            seen.append((self.path, self.headers.get("Authorization", ""), data.decode()))
            payload = b'{"number": 7}'
            self.send_response(201)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_PUT = do_POST

    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    harness = GatewayHarness("http://127.0.0.1:9", api_url=f"http://127.0.0.1:{server.server_address[1]}")
    try:

        def send(method: str, path: str, body: dict) -> bytes:
            raw = json.dumps(body).encode()
            with socket.create_connection(("127.0.0.1", harness.port), 10) as sock:
                sock.sendall(
                    f"{method} /api{path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    f"Authorization: Bearer placeholder\r\nContent-Length: {len(raw)}\r\n"
                    "Connection: close\r\n\r\n".encode()
                    + raw
                )
                return read_all(sock)

        pr = send("POST", "/repos/acme/widgets/pulls", {"title": "t", "head": BRANCH, "base": "main"})
        merge = send("PUT", "/repos/acme/widgets/pulls/7/merge", {"merge_method": "merge"})
    finally:
        harness.close()
        server.shutdown()
        server.server_close()
    assert status_of(pr) == 201 and status_of(merge) == 403
    assert [(path, auth) for path, auth, _ in seen] == [("/repos/acme/widgets/pulls", f"Bearer {TOKEN}")]
    assert TOKEN.encode() not in pr + merge
