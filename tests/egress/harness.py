"""A real egress proxy on loopback, run in a thread with its own event loop, and real upstream servers, so tests
can talk to both with plain blocking sockets. DNS is a table the test controls (injected, never the machine's)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import h11

from ringfence.egress.audit import BatchedAudit
from ringfence.egress.proxy import EgressProxy, ProxyLimits
from ringfence.egress.rules import EgressPolicy
from ringfence.net.addresses import AddressPolicy
from ringfence.net.resolve import Answer, CachingResolver, Resolver, StaticResolver


class ProxyHarness:
    def __init__(
        self,
        sessions: dict[str, tuple[EgressPolicy, ProxyLimits]],
        *,
        ranges: Sequence[str] = (),
        resolver: Resolver | None = None,
        host_addresses: Sequence[str] = (),
    ) -> None:
        import ipaddress

        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self.ports: dict[str, int] = {}
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

        def writer(batch: Sequence[dict[str, Any]]) -> None:
            for record in batch:
                json.dumps(record)  # every record must be one JSON value
            with self._lock:
                self.records.extend(batch)

        async def start() -> None:
            self.audit = BatchedAudit(writer, lambda: datetime.now(UTC).isoformat(), interval=0.01)
            self.audit.start()
            addresses = AddressPolicy.parse(ranges, [ipaddress.ip_address(a) for a in host_addresses])
            self.proxy = EgressProxy(addresses, CachingResolver(resolver or StaticResolver({})), self.audit)
            for name, (policy, limits) in sessions.items():
                self.proxy.add_session(name, policy, limits)
                self.ports[name] = (await self.proxy.listen_tcp(name, "127.0.0.1", 0))[1]

        asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        self.port = next(iter(self.ports.values()))

    def wait_records(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.records) >= count:
                    return list(self.records)
            time.sleep(0.01)
        with self._lock:
            raise AssertionError(f"{len(self.records)} audit records, expected {count}: {self.records}")

    def exchange(self, raw: bytes, session: str | None = None, timeout: float = 5.0) -> bytes:
        """Send `raw`, half-close, read everything until the proxy closes."""
        with socket.create_connection(("127.0.0.1", self.ports[session] if session else self.port), timeout) as s:
            s.sendall(raw)
            with_shutdown(s)
            return read_all(s)

    def close(self) -> None:
        async def stop() -> None:
            await self.proxy.close()
            await self.audit.close()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


def with_shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            return data
        if not chunk:
            return data
        data += chunk


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.") else 0


def header(answer: bytes, name: str) -> str | None:
    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    for line in head.split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


class EchoHandler(BaseHTTPRequestHandler):
    """Answers with what it received: the request line and headers as JSON; /redirect redirects; /deny sets the
    proxy's own deny header (which the proxy must strip)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                chunk = self.rfile.read(size + 2)[:size]
                if size == 0:
                    break
                body += chunk
        payload = json.dumps(
            {"line": self.requestline, "headers": [[k, v] for k, v in self.headers.items()], "body": body.decode()}
        ).encode()
        self.send_response(302 if self.path == "/redirect" else 200)
        if self.path == "/redirect":
            self.send_header("Location", "http://elsewhere.example/")
        if self.path == "/deny":
            self.send_header("X-Ringfence-Deny", "spoofed by upstream")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_HEAD = _answer


def http_upstream(host: str = "127.0.0.1") -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, 0), EchoHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    return server


class RawUpstream:
    """A TCP server that records the peer and first bytes of each connection and echoes everything back."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._accepted(conn)

    def _accepted(self, conn: socket.socket) -> None:
        threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        got = b""
        with conn:
            conn.settimeout(5)
            try:
                while chunk := conn.recv(65536):
                    got += chunk
                    conn.sendall(chunk)
            except OSError:
                pass
        self.received.append(got)

    def close(self) -> None:
        # Never close a listening socket while another thread is blocked in accept() on it: the descriptor number
        # is freed, the next socket anyone opens reuses it, and the blocked accept then takes connections meant
        # for that socket (it stole a git host's connections and echoed them back). shutdown() wakes the accept.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)
        self.sock.close()


_HOP_BY_HOP_NAMES = {b"connection", b"keep-alive", b"proxy-connection", b"proxy-authorization", b"te", b"trailer"}
PLAIN_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class RecordingUpstream(RawUpstream):
    """Reads each connection to its end (the proxy closes it after the response) and keeps every byte. Once a
    strict parser has seen the end of the first request, it answers with the next of `answers` (or a plain 200)
    and closes its sending side."""

    def __init__(self) -> None:
        self.answers: list[bytes] = []
        self._active = 0
        self._lock = threading.Lock()
        super().__init__()

    def _accepted(self, conn: socket.socket) -> None:
        with self._lock:
            self._active += 1
            answer = self.answers.pop(0) if self.answers else PLAIN_OK
            # each connection's place is where it was accepted, not where it ended: a proxy may end its first
            # upstream connection after its second (the order is what the tests judge)
            slot = len(self.received)
            self.received.append(b"")
        threading.Thread(target=self._record, args=(conn, answer, slot), daemon=True).start()

    def _record(self, conn: socket.socket, answer: bytes, slot: int) -> None:
        got, parser, answered = b"", h11.Connection(h11.SERVER), False
        try:
            with conn:
                conn.settimeout(5)
                while chunk := conn.recv(65536):
                    got += chunk
                    if answered:
                        continue
                    parser.receive_data(chunk)
                    while (event := parser.next_event()) not in (h11.NEED_DATA, h11.PAUSED):
                        if isinstance(event, h11.EndOfMessage):
                            conn.sendall(answer)
                            conn.shutdown(socket.SHUT_WR)  # frames an answer that has no length of its own
                            answered = True
                            break
        except (OSError, h11.ProtocolError):
            pass  # what arrived is still judged by the test
        finally:
            with self._lock:
                self.received[slot] = got
                self._active -= 1

    def carried(self, exchange: Callable[[], bytes]) -> tuple[bytes, list[bytes]]:
        """What `exchange` answered, and every connection it made here (each once it has ended)."""
        before = len(self.settled())
        answer = exchange()
        return answer, self.settled()[before:]

    def settled(self, timeout: float = 5.0) -> list[bytes]:
        """Every connection the proxy made so far, once each has ended."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            waiting, _, _ = select.select([self.sock], [], [], 0)
            with self._lock:
                if not waiting and self._active == 0:
                    return list(self.received)
            time.sleep(0.005)
        raise AssertionError("an upstream connection did not end")


def one_request(raw: bytes, host: bytes) -> tuple[h11.Request, bytes]:
    """The one re-serialized request an upstream connection must carry (framing and hop-by-hop headers as a proxy
    must leave them, `host` as the Host), and its body; fails on anything else."""
    parser = h11.Connection(h11.SERVER)
    parser.receive_data(raw)
    parser.receive_data(b"")
    request = parser.next_event()
    assert isinstance(request, h11.Request), raw[:200]
    body = b""
    while isinstance(event := parser.next_event(), h11.Data):
        body += event.data
    assert isinstance(event, h11.EndOfMessage), (event, raw[:200])
    assert parser.trailing_data == (b"", True), f"bytes after the request: {parser.trailing_data[0][:100]!r}"
    names = [name for name, _ in request.headers]
    assert not (b"content-length" in names and b"transfer-encoding" in names), raw[:300]
    assert names.count(b"content-length") <= 1 and names.count(b"transfer-encoding") <= 1, raw[:300]
    assert not set(names) & _HOP_BY_HOP_NAMES, raw[:300]
    assert not any(name.startswith(b"x-ringfence-") for name in names), raw[:300]
    assert [value for name, value in request.headers if name == b"host"] == [host]
    assert request.target.startswith(b"/"), request.target
    return request, body


def framed_request(
    start: bytes,
    payload: bytes,
    *,
    use_chunks: bool,
    cuts: list[int],
    extension: bytes = b"",
    headers: Sequence[bytes] = (),
    mutation: bytes | None = None,
    host: bytes = b"x",
) -> bytes:
    """A request with `payload` framed by its length or in chunks, plus `headers` and an optional last header line
    (`mutation`) that may contradict the framing."""
    framing = b"Transfer-Encoding: chunked" if use_chunks else b"Content-Length: %d" % len(payload)
    lines = [start, b"Host: " + host, framing, *headers, *([mutation] if mutation is not None else [])]
    return b"\r\n".join(lines) + b"\r\n\r\n" + (chunked(payload, cuts, extension) if use_chunks else payload)


def chunked(payload: bytes, cuts: list[int], extension: bytes) -> bytes:
    pieces, start = [], 0
    for cut in sorted({c % (len(payload) + 1) for c in cuts} | {len(payload)}):
        if cut > start:
            pieces.append(payload[start:cut])
            start = cut
    framed = b"".join(b"%x%s\r\n%s\r\n" % (len(p), extension, p) for p in pieces)
    return framed + b"0\r\n\r\n"


def client_hello(server_name: str | None) -> bytes:
    """A real TLS ClientHello, as Python's ssl module writes it."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    if server_name is None:
        context.check_hostname = False
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


class SequenceResolver:
    """Answers from a list per name, one entry per call (a rebinding DNS server); TTL 0 so nothing is cached."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        import ipaddress

        self.calls: dict[str, int] = {}
        self._answers = {k: [tuple(ipaddress.ip_address(a) for a in v) for v in vs] for k, vs in answers.items()}

    async def resolve(self, name: str) -> Answer:
        from ringfence.net.resolve import ResolveError

        if name not in self._answers:
            raise ResolveError(f"{name} has no A or AAAA record")
        n = self.calls.get(name, 0)
        self.calls[name] = n + 1
        options = self._answers[name]
        return Answer(options[min(n, len(options) - 1)], 0.0)


Factory = Callable[..., ProxyHarness]
