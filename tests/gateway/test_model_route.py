"""The model route: the provider's API with the session's key added by the gateway, the sandbox's placeholder
dropped, server-sent events passed through as they come (no buffering), and path tricks refused."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.egress.harness import read_all, status_of
from tests.gateway.test_git_gateway import GatewayHarness

KEY = "sk-ant-TESTKEY-0123456789"


class Provider:
    """A local stand-in for the provider's HTTP API (the real adapter's request shapes are checked here): it
    requires the key, records requests, and streams events, holding the last until the test releases it."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.release = threading.Event()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    body = b""
                    while size := int(self.rfile.readline().split(b";")[0], 16):
                        body += self.rfile.read(size + 2)[:size]
                    self.rfile.readline()
                else:
                    body = self.rfile.read(length)
                provider.seen.append({"path": self.path, "headers": dict(self.headers.items()), "body": body})
                if self.headers.get("x-api-key") != KEY:
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("X-Ringfence-Deny", "spoofed by the upstream")  # must never reach the client
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(b'event: message_start\ndata: {"type":"message_start"}\n\n')
                self.wfile.flush()
                provider.release.wait(10)
                self.wfile.write(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
                self.wfile.flush()
                self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def provider() -> Iterator[Provider]:
    p = Provider()
    yield p
    p.close()


@pytest.fixture
def gateway(provider: Provider, tmp_path: Path) -> Iterator[GatewayHarness]:
    harness = GatewayHarness("http://127.0.0.1:9", models={"anthropic": (provider.url, KEY)})
    yield harness
    harness.close()


REQUEST = json.dumps({"model": "claude", "max_tokens": 5, "stream": True, "messages": []}).encode()


def send(port: int, path: str, headers: str = "") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), 10)
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nanthropic-version: 2023-06-01\r\n"
        f"x-api-key: placeholder\r\nAuthorization: Bearer placeholder\r\n{headers}"
        f"Content-Length: {len(REQUEST)}\r\nConnection: close\r\n\r\n".encode()
        + REQUEST
    )
    return sock


def test_events_stream_through_unbuffered_with_the_key_added_upstream(
    gateway: GatewayHarness, provider: Provider
) -> None:
    with send(gateway.port, "/model/anthropic/v1/messages") as sock:
        seen = b""
        while b"message_start" not in seen:  # arrives while the provider still holds the rest of the stream
            chunk = sock.recv(65536)
            assert chunk, seen
            seen += chunk
        assert not provider.release.is_set()
        provider.release.set()
        seen += read_all(sock)
    assert status_of(seen) == 200 and b"message_stop" in seen
    assert b"spoofed" not in seen  # an upstream cannot speak for the gateway
    [request] = provider.seen
    assert request["path"] == "/v1/messages" and request["body"] == REQUEST
    assert request["headers"]["x-api-key"] == KEY and "Authorization" not in request["headers"]
    assert request["headers"]["anthropic-version"] == "2023-06-01"
    assert KEY.encode() not in seen
    deadline = time.monotonic() + 5
    while not any(r.get("route") == "model" for r in gateway.records) and time.monotonic() < deadline:
        time.sleep(0.01)
    [record] = [r for r in gateway.records if r.get("route") == "model"]
    assert record["decision"] == "allow" and KEY not in json.dumps(gateway.records)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/model/openai/v1/chat/completions", 403),
        ("/model/anthropic/../git/acme/widgets.git/info/refs", 400),
        ("/model/anthropic/v1/%2e%2e/admin", 400),
        ("/model/anthropic/./v1/messages", 400),
    ],
)
def test_unknown_providers_and_path_tricks_are_refused(
    gateway: GatewayHarness, provider: Provider, path: str, status: int
) -> None:
    with send(gateway.port, path) as sock:
        assert status_of(read_all(sock)) == status
    assert provider.seen == []


def test_a_refused_key_is_a_502_not_a_challenge(provider: Provider) -> None:
    harness = GatewayHarness("http://127.0.0.1:9", models={"anthropic": (provider.url, "sk-wrong")})
    try:
        with send(harness.port, "/model/anthropic/v1/messages") as sock:
            answer = read_all(sock)
        assert status_of(answer) == 502 and b"sk-wrong" not in answer
    finally:
        harness.close()


@pytest.mark.parametrize("keeps", [True, False])
def test_turns_are_recorded_only_when_the_session_keeps_content(provider: Provider, keeps: bool) -> None:
    """The sessions layer passes a recorder only when the policy keeps this session's content (never under
    zero data retention); without one, the exchange is streamed and nothing is held."""
    kept: list[tuple[bytes, bytes]] = []
    harness = GatewayHarness(
        "http://127.0.0.1:9",
        models={"anthropic": (provider.url, KEY)},
        recorder=(lambda up, down: kept.append((up, down))) if keeps else None,
    )
    provider.release.set()
    try:
        with send(harness.port, "/model/anthropic/v1/messages") as sock:
            answer = read_all(sock)
    finally:
        harness.close()
    assert status_of(answer) == 200
    if keeps:
        [(up, down)] = kept
        assert up == REQUEST and b"message_start" in down and b"message_stop" in down
        assert KEY.encode() not in up + down
    else:
        assert kept == []
