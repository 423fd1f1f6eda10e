"""A1, the front door: an API body is authenticated before a byte of it is read, capped per route (413 early), and
its JSON nesting bounded (deep JSON is a 4xx, never a 500); a fuzz of every route of the live API finds no 500."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringfence.api.app import create_app
from ringfence.api.frontdoor import DEFAULT_CAP, MAX_DEPTH, json_too_deep
from ringfence.store import accounts
from ringfence.store.db import Store
from tests.conftest import T0
from tests.egress.harness import read_all
from tests.servers import free_port, serving

CHUNK = 64 * 1024


def _answer_while_sending(port: int, head: bytes, total: int) -> tuple[bytes, int]:
    """Send `head`, then a chunked body of `total` bytes in 64 KiB chunks, looking for an answer after each: the
    answer and how many body bytes had been sent when it came (or everything, if none came)."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, CHUNK)
        sock.sendall(head)
        chunk = f"{CHUNK:x}\r\n".encode() + b"x" * CHUNK + b"\r\n"
        while sent < total:
            readable, _, _ = select.select([sock], [], [], 0.2)
            if readable:
                return read_all(sock), sent  # the whole answer: head and body may come apart
            try:
                sock.sendall(chunk)
            except OSError:
                break
            sent += CHUNK
        return read_all(sock), sent


def test_an_unauthenticated_body_is_answered_before_it_is_read(store: Store) -> None:
    with serving(create_app(store, clock=lambda: T0)) as base:
        port = int(base.rsplit(":", 1)[1])
        head = b"POST /v1/users HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        head += b"Content-Type: application/json\r\n\r\n"
        answer, sent = _answer_while_sending(port, head, 300 * 2**20)
    assert answer.startswith(b"HTTP/1.1 401") and b"the body was not read" in answer
    assert sent < 2**20


def test_a_300_mib_unauthenticated_body_leaves_the_servers_memory_alone(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGFENCE_")}
    env.update(RINGFENCE_DATA_DIR=str(tmp_path), RINGFENCE_DEMO="false", RINGFENCE_SANDBOX_DIR=str(tmp_path / "s"))
    server = subprocess.Popen(
        [sys.executable, "-m", "ringfence", "serve", "--listen", f"127.0.0.1:{port}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "the server did not start"
            time.sleep(0.1)

        def rss() -> int:
            status = Path(f"/proc/{server.pid}/status").read_text()
            return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) * 1024

        before = rss()
        head = b"POST /v1/users HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        for _ in range(3):
            answer, sent = _answer_while_sending(port, head, 300 * 2**20)
            assert answer.startswith(b"HTTP/1.1 401") and sent < 2**20
        assert rss() - before < 16 * 2**20
    finally:
        server.terminate()
        server.wait(30)


@pytest.fixture
def token(store: Store) -> str:
    user = accounts.create_user(store, "root", T0, actor="t", plan="pro", server_admin=True)
    return accounts.create_api_key(store, user.id, "t", T0, actor="t")[1].reveal()


def test_a_declared_length_over_the_cap_is_refused_before_the_body(store: Store, token: str) -> None:
    with serving(create_app(store, clock=lambda: T0)) as base:
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                f"POST /v1/users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {100 * 2**20}\r\n\r\n".encode()
            )
            answer = read_all(sock)  # nothing of the body was sent: the server answers and closes
        assert answer.startswith(b"HTTP/1.1 413") and str(DEFAULT_CAP).encode() in answer
        chunked = b"POST /v1/users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token.encode()
        chunked += b"\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
        answer, sent = _answer_while_sending(port, chunked, 16 * 2**20)
        assert answer.startswith(b"HTTP/1.1 413") and sent <= DEFAULT_CAP + 2 * CHUNK


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5_000, 200_000])
@pytest.mark.parametrize("path", ["/v1/policy/explain", "/v1/users", "/v1/environments"])
def test_deep_json_is_a_4xx_never_a_500(store: Store, token: str, depth: int, path: str) -> None:
    body = "[" * depth + "]" * depth
    if path == "/v1/policy/explain":
        body = json.dumps({"accounts": [], "events": [], "at": "2026-01-01T00:00:00Z", "x": None}).replace("null", body)
    with serving(create_app(store, clock=lambda: T0)) as base:
        answer = httpx.post(
            base + path, content=body, headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        )
    assert 400 <= answer.status_code < 500 and answer.json()["error"]["code"] in ("invalid", "too_large")


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5), lambda inner: st.lists(inner) |
                    st.dictionaries(st.text(max_size=3), inner), max_leaves=200))  # fmt: skip
@settings(max_examples=200, deadline=None)
def test_the_depth_check_agrees_with_the_parser(value: Any) -> None:
    text = json.dumps(value).encode()

    def depth(v: Any) -> int:
        if isinstance(v, list):
            return 1 + max((depth(x) for x in v), default=0)
        if isinstance(v, dict):
            return 1 + max((depth(x) for x in v.values()), default=0)
        return 0

    for limit in (0, 1, 2, 3, 5):
        assert json_too_deep(text, limit) == (depth(value) > limit)


def test_strings_and_escapes_do_not_count_as_nesting() -> None:
    assert not json_too_deep(b'{"a": "[[[[[[[[[[", "b": "\\"[[[["}', 2)
    assert json_too_deep(b'{"a": "\\\\", "b": [[[]]]}', 3)


def test_a_head_sent_one_byte_at_a_time_is_cut_off(store: Store) -> None:
    """Slowloris: every byte used to reset uvicorn's idle timer; now the whole head has a deadline."""
    with serving(create_app(store, clock=lambda: T0), head_timeout=1.0) as base:
        port = int(base.rsplit(":", 1)[1])
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sent, closed = 0, False
            for byte in head:  # 0.1 s a byte: 12 s for the whole head, if the server waited
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    closed = True
                    break
                sent += 1
                readable, _, _ = select.select([sock], [], [], 0.1)
                if readable and sock.recv(1024) == b"":
                    closed = True
                    break
        assert closed and sent < len(head)
        # a client that sends its head at once is served, on the same server, again and again on one connection
        with httpx.Client(base_url=base) as client:
            assert [client.get("/healthz").status_code for _ in range(3)] == [200, 200, 200]


def test_a_head_over_the_size_bound_is_refused(store: Store) -> None:
    with serving(create_app(store, clock=lambda: T0)) as base:
        answer = httpx.get(f"{base}/healthz", headers={"X-Big": "a" * 20_000})
    assert answer.status_code in (400, 431)
