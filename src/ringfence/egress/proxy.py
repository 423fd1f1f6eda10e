"""The egress proxy: CONNECT tunnels, absolute-form HTTP/1.1 and SOCKS5 CONNECT (ringfence.egress.socks, on the
same listeners: the first byte tells them apart), decided per session, limited and audited.

Owns: listeners (each belongs to exactly one session: the listener *is* the identity; no header is consulted),
reading request heads with h11 (strict, size- and time-bounded), the decision sequence (name rules, then address
checks on the resolved answers, then the TLS server name for tunnels to 443), refusals with a reason a human or an
agent can act on, the relay (ringfence.net.relay, splice), per-session limits, and one audit record per attempt.

Plain HTTP is re-serialized from h11's parsed form, never forwarded raw; a new upstream connection is made for
every request (never reused across hosts); redirects are returned, never followed; upgrades are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import h11

from ringfence.egress import socks
from ringfence.egress.audit import BatchedAudit
from ringfence.egress.metrics import Metrics
from ringfence.egress.rules import EgressDecision, EgressPolicy, HostRule
from ringfence.egress.tls import NotTls, read_client_hello
from ringfence.net.addresses import AddressPolicy, IPAddress
from ringfence.net.dial import Dialed, DialRefused, dial
from ringfence.net.hostport import HostError, Target, normalize_name, parse_target
from ringfence.net.httphead import (
    DENY_HEADER,
    HeadError,
    HeadGuard,
    next_request,
    refusal,
    relayed_response_headers,
)
from ringfence.net.relay import Relay, TokenBucket
from ringfence.net.resolve import CachingResolver

log = logging.getLogger("ringfence.egress")
_Parsed = TypeVar("_Parsed")
_ESTABLISHED = b"HTTP/1.1 200 Connection Established\r\n\r\n"
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",  # framing is h11's, from the parsed message
    }
)
_DROP_FROM_UPSTREAM = _HOP_BY_HOP | {DENY_HEADER.lower().encode()}  # an upstream cannot speak for the proxy


@dataclass(frozen=True)
class ProxyLimits:
    """Per-session abuse limits. Sizes in bytes, times in seconds."""

    max_concurrent: int = 256
    new_per_second: float = 50.0
    new_burst: int = 100
    bytes_per_second: float | None = None
    max_request_line: int = 8 * 1024
    max_header_bytes: int = 64 * 1024
    header_timeout: float = 10.0
    connect_timeout: float = 10.0
    idle_timeout: float = 300.0
    tls_ports: frozenset[int] = frozenset({443})  # tunnels to these ports must open with a matching ClientHello


class Refusal(Exception):
    """Answer the client with `status` and this reason (and audit it)."""

    def __init__(self, status: int, reason: str, rule: str, decision: str = "deny") -> None:
        super().__init__(reason)
        self.status, self.reason, self.rule, self.decision = status, reason, rule, decision


@dataclass
class SessionEgress:
    session_id: str
    policy: EgressPolicy
    limits: ProxyLimits
    new_connections: TokenBucket
    refusals: TokenBucket  # how many over-limit connections per second still get a 429 before accepting pauses
    byte_budget: TokenBucket | None
    active: int = 0
    phase: str | None = None  # set by `set_policy` (e.g. "setup", then "agent"); named in each record
    listeners: list[socket.socket] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    relays: set[Relay] = field(default_factory=set)


def refusal_bytes(status: int, reason: str, rule: str, what: str) -> bytes:
    """The egress proxy's answer to a refused request (see ringfence.net.httphead.refusal)."""
    hint = "Ask an administrator to add the host to this environment's allow list if it is needed."
    return refusal(status, reason, rule, who="egress proxy", what=what, hint=hint if status == 403 else "")


class EgressProxy:
    """One proxy for many sessions. Time for records comes from `clock`; the relay uses the loop's clock."""

    def __init__(
        self,
        addresses: AddressPolicy,
        resolver: CachingResolver,
        audit: BatchedAudit | None = None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        protected: set[tuple[IPAddress, int]] | None = None,
    ) -> None:
        self.addresses, self.resolver, self.audit, self.clock = addresses, resolver, audit, clock
        self.protected: set[tuple[IPAddress, int]] = protected if protected is not None else set()
        self.sessions: dict[str, SessionEgress] = {}
        self.metrics = Metrics()
        self._sweeper: asyncio.Task[None] | None = None

    # -- sessions and listeners ---------------------------------------------------------------------------------

    def add_session(self, session_id: str, policy: EgressPolicy, limits: ProxyLimits | None = None) -> SessionEgress:
        if session_id in self.sessions:
            raise ValueError(f"session {session_id} already has an egress policy")
        limits = limits or ProxyLimits()
        now = asyncio.get_running_loop().time()
        budget = (
            None
            if limits.bytes_per_second is None
            else TokenBucket(limits.bytes_per_second, max(limits.bytes_per_second, 65536), now)
        )
        state = SessionEgress(
            session_id,
            policy,
            limits,
            TokenBucket(limits.new_per_second, limits.new_burst, now),
            TokenBucket(20.0, 20.0, now),
            budget,
        )
        self.sessions[session_id] = state
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_idle())
        return state

    async def listen_tcp(self, session_id: str, host: str, port: int) -> tuple[str, int]:
        """A TCP listener for one session (tests, `egress serve`); returns the bound address."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        bound = sock.getsockname()

        self.protected.add((ipaddress.ip_address(bound[0]), bound[1]))  # never a destination: E16
        self._listen(session_id, sock)
        return bound[0], bound[1]

    async def listen_unix(self, session_id: str, path: Path) -> None:
        """A Unix-socket listener for one session (what the sandbox bridge connects to)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        path.chmod(0o600)
        self._listen(session_id, sock)

    def _listen(self, session_id: str, sock: socket.socket) -> None:
        state = self.sessions[session_id]
        sock.listen(1024)
        sock.setblocking(False)
        state.listeners.append(sock)
        asyncio.get_running_loop().add_reader(sock.fileno(), self._on_acceptable, state, sock)

    async def set_policy(self, session_id: str, policy: EgressPolicy, phase: str) -> None:
        """Switch a session to another policy (a setup script's, then the agent's). Every connection opened under
        the previous policy is cut, so nothing it allowed outlives it; records from now on name `phase`."""
        state = self.sessions.get(session_id)
        if state is None:
            raise KeyError(f"session {session_id} has no egress policy")
        state.policy, state.phase = policy, phase
        for relay in list(state.relays):
            relay.abort()
        for task in list(state.tasks):
            task.cancel()
        await asyncio.gather(*state.tasks, return_exceptions=True)

    async def remove_session(self, session_id: str) -> None:
        """Stop listening for a session and cut its connections."""
        state = self.sessions.pop(session_id, None)
        if state is None:
            return
        loop = asyncio.get_running_loop()
        for sock in state.listeners:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(sock.fileno())
            sock.close()
        for relay in list(state.relays):
            relay.abort()
        for task in list(state.tasks):
            task.cancel()
        await asyncio.gather(*state.tasks, return_exceptions=True)

    async def close(self) -> None:
        for session_id in list(self.sessions):
            await self.remove_session(session_id)
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    async def _sweep_idle(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(1.0)
            now = loop.time()
            for state in list(self.sessions.values()):
                for relay in list(state.relays):
                    if now - relay.last_active > state.limits.idle_timeout:
                        relay.abort()

    def _on_acceptable(self, state: SessionEgress, server: socket.socket) -> None:
        """Accept what is waiting, each connection paying its new-connection token here. Over a limit, a few
        connections per second are still accepted to be told why (429); beyond that the session's listener is
        not accepted from until a token is due: its connections wait in its own backlog, costing the proxy (and
        the other sessions) nothing."""
        loop = asyncio.get_running_loop()
        limits = state.limits
        for _ in range(16):
            now = loop.time()
            refusal: Refusal | None = None
            if state.new_connections.take(1, now) < 1:
                refusal = Refusal(429, f"more than {limits.new_per_second:g} new connections per second", "limit:rate")
            elif state.active >= limits.max_concurrent:
                refusal = Refusal(429, f"{limits.max_concurrent} connections already open", "limit:concurrent")
            if refusal is not None and state.refusals.take(1, now) < 1:
                loop.remove_reader(server.fileno())
                pause = state.new_connections.delay() if refusal.rule == "limit:rate" else 0.05
                loop.call_later(min(pause, 1.0), self._resume_accepting, state, server)
                return
            try:
                client, _ = server.accept()
            except (BlockingIOError, InterruptedError):
                (state.refusals if refusal else state.new_connections).give_back(1)
                return
            except OSError as exc:  # e.g. out of descriptors: keep serving the others
                log.warning("accept failed: %s", exc)
                return
            client.setblocking(False)
            self.metrics.active += 1
            task = loop.create_task(self._client(state, client, refusal))
            state.tasks.add(task)
            task.add_done_callback(state.tasks.discard)

    def _resume_accepting(self, state: SessionEgress, server: socket.socket) -> None:
        if self.sessions.get(state.session_id) is state and server.fileno() >= 0:
            asyncio.get_running_loop().add_reader(server.fileno(), self._on_acceptable, state, server)

    # -- one client connection ----------------------------------------------------------------------------------

    def _record(self, state: SessionEgress, **fields: Any) -> dict[str, Any]:
        record = {"kind": "egress.connection", "session": state.session_id, "at": self.clock().isoformat()}
        if state.phase is not None:
            record["phase"] = state.phase
        return {**record, **fields}

    def _emit(self, record: dict[str, Any]) -> None:
        self.metrics.decided(record.get("decision", "?"), str(record.get("rule", "?")))
        if self.audit is not None:
            self.audit.record(record)

    async def _client(self, state: SessionEgress, client: socket.socket, refusal: Refusal | None = None) -> None:
        loop = asyncio.get_running_loop()
        if refusal is not None:  # over a limit: answered at once, without reading (or parsing) anything
            self._emit(self._record(state, decision="deny", rule=refusal.rule, reason=refusal.reason))
            with contextlib.suppress(OSError):
                await loop.sock_sendall(
                    client, refusal_bytes(refusal.status, refusal.reason, refusal.rule, "connection")
                )
            self.metrics.active -= 1
            client.close()
            return
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=state.limits.max_header_bytes)
        handed_off, fresh, pending = False, True, b""
        try:
            while True:
                record = self._record(state)
                started = time.perf_counter()
                try:
                    if fresh:
                        # The first byte tells the protocol: SOCKS5 starts with its version, 5; HTTP with a letter.
                        fresh = False
                        pending = await self._first_bytes(state, client)
                        if not pending:
                            return
                        if pending[0] == socks.VERSION:
                            handed_off = await self._socks(state, client, pending, record, started)
                            return
                    request = await self._read_head(state, conn, client, pending)
                    pending = b""
                    if request is None:
                        return  # the client closed between requests
                    record.update(method=request.method.decode("ascii", "replace")[:20])
                    if request.method == b"CONNECT":
                        # The relay owns the sockets from here; this task ends (no coroutine per tunnel).
                        handed_off = await self._connect(state, conn, client, request, record, started)
                        return
                    keep_going = await self._forward(state, conn, client, request, record, started)
                    if not keep_going:
                        return
                except _TunnelRefusal as refused:  # inside an accepted tunnel: no HTTP answer, just the close
                    record.update(decision="deny", rule=refused.rule, reason=refused.reason)
                    record["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
                    self._emit(record)
                    return
                except Refusal as refused:
                    record.update(decision=refused.decision, rule=refused.rule, reason=refused.reason)
                    record["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
                    self._emit(record)
                    what = f"{record.get('method', 'request')} {record.get('target', '')}".strip()
                    with contextlib.suppress(OSError):
                        await loop.sock_sendall(
                            client, refusal_bytes(refused.status, refused.reason, refused.rule, what)
                        )
                    return
        except (OSError, asyncio.CancelledError):
            return
        finally:
            if not handed_off:
                self.metrics.active -= 1
                client.close()

    async def _first_bytes(self, state: SessionEgress, client: socket.socket) -> bytes:
        """The connection's first bytes (b"": it closed), within the head timeout."""
        timeout = state.limits.header_timeout
        try:
            return await _receive(client, 65536, timeout)
        except TimeoutError:
            raise Refusal(408, f"request head not complete within {timeout:g} s", "limit:header-time") from None

    async def _read_head(
        self, state: SessionEgress, conn: h11.Connection, client: socket.socket, pending: bytes = b""
    ) -> h11.Request | None:
        """The next request head; `pending` is what was already read of it."""
        loop = asyncio.get_running_loop()
        limits = state.limits
        deadline = loop.time() + limits.header_timeout
        guard = HeadGuard(limits.max_request_line, limits.max_header_bytes)
        late = f"request head not complete within {limits.header_timeout:g} s"
        try:
            if pending:
                guard.feed(pending)
                conn.receive_data(pending)
            while True:
                event = next_request(conn, limits.max_header_bytes)
                if event is None or isinstance(event, h11.Request):
                    return event
                try:
                    data = await _receive(client, 65536, deadline - loop.time())
                except TimeoutError:
                    raise Refusal(408, late, "limit:header-time") from None
                guard.feed(data)
                conn.receive_data(data)
        except HeadError as exc:
            raise Refusal(exc.status, exc.reason, exc.rule) from None

    def _admit(self, state: SessionEgress) -> None:
        """The concurrency limit for one more upstream connection (a keep-alive client asks again per request;
        the rate of new client connections was paid at accept)."""
        if state.active >= state.limits.max_concurrent:
            raise Refusal(429, f"{state.limits.max_concurrent} connections already open", "limit:concurrent")

    async def _decide_and_dial(
        self, state: SessionEgress, target: Target, record: dict[str, Any]
    ) -> tuple[EgressDecision, Dialed]:
        decision = state.policy.decide(target)
        record.update(rule=decision.rule)
        if not decision.allowed:
            raise Refusal(403, decision.reason, decision.rule)
        self._admit(state)
        loop = asyncio.get_running_loop()
        try:
            dialed = await dial(
                target,
                self.addresses,
                self.resolver,
                now=loop.time(),
                connect_timeout=state.limits.connect_timeout,
                protected=self.protected,
            )
        except DialRefused as exc:
            record["answers"] = [f"{v.address} {v.kind}" for v in exc.verdicts]
            if exc.rule in ("upstream", "dns"):
                raise Refusal(502, exc.reason, exc.rule, "error") from None
            raise Refusal(403, exc.reason, exc.rule) from None
        record.update(
            address=str(dialed.address),
            answers=[f"{v.address} {v.kind}" for v in dialed.verdicts],
            dns_ms=round(dialed.dns_seconds * 1000, 3),
            connect_ms=round(dialed.connect_seconds * 1000, 3),
        )
        self.metrics.connect_latency.observe(dialed.connect_seconds)
        self.metrics.dns_latency.observe(dialed.dns_seconds)
        return decision, dialed

    async def _connect(
        self,
        state: SessionEgress,
        conn: h11.Connection,
        client: socket.socket,
        request: h11.Request,
        record: dict[str, Any],
        started: float,
    ) -> bool:
        authority = request.target.decode("ascii", "replace")
        record.update(target=authority[:300])
        try:
            target = parse_target(authority, "CONNECT target")
        except HostError as exc:
            raise Refusal(400, str(exc), "target") from None
        record.update(host=target.host, port=target.port)
        decision, dialed = await self._decide_and_dial(state, target, record)
        # A constant answer: h11's serializer would only rebuild these bytes. What the client sent after its head
        # (a ClientHello, say) is still in h11's buffer.
        early, _ = conn.trailing_data
        await self._tunnel(state, client, target, decision, dialed, _ESTABLISHED, early, record, started)
        return True

    async def _tunnel(
        self,
        state: SessionEgress,
        client: socket.socket,
        target: Target,
        decision: EgressDecision,
        dialed: Dialed,
        answer: bytes,
        early: bytes,
        record: dict[str, Any],
        started: float,
    ) -> None:
        """An allowed tunnel (CONNECT or SOCKS5): answer the client, check the TLS server name for TLS ports, and
        hand both sockets to the relay. `early` is what the client sent after its request."""
        loop = asyncio.get_running_loop()
        upstream = dialed.sock
        try:
            await loop.sock_sendall(client, answer)
            if target.port in state.limits.tls_ports:
                early = await self._check_tls(state, client, target, decision, early, record)
            if early:
                await loop.sock_sendall(upstream, early)
        except BaseException:
            upstream.close()
            raise
        decided_as = "would_deny" if decision.would_deny else "allow"
        record.update(decision=decided_as, reason=decision.reason)
        state.active += 1

        def finished(relay: Relay) -> None:
            state.active -= 1
            self.metrics.active -= 1
            state.relays.discard(relay)
            up, down = relay.bytes_a_to_b + len(early), relay.bytes_b_to_a
            self.metrics.bytes["up"] += up
            self.metrics.bytes["down"] += down
            record.update(bytes_up=up, bytes_down=down, duration_ms=round((time.perf_counter() - started) * 1000, 3))
            self._emit(record)

        relay = Relay(client, upstream, on_close=finished, limit=state.byte_budget)
        state.relays.add(relay)
        relay.start()

    async def _socks(
        self, state: SessionEgress, client: socket.socket, data: bytes, record: dict[str, Any], started: float
    ) -> bool:
        """A SOCKS5 CONNECT (RFC 1928, `socks5h://`): the same decision, dial, TLS check, relay and audit record
        as an HTTP CONNECT; refusals are SOCKS replies (the reason is in the audit record: SOCKS has no place for
        it). True once the relay owns the sockets."""
        loop = asyncio.get_running_loop()
        record.update(method="SOCKS5")
        deadline = loop.time() + state.limits.header_timeout
        buffer = bytearray(data)
        greeted = False  # until then, the client expects a method choice, not a reply
        try:
            used = await self._socks_read(client, buffer, socks.read_greeting, socks.MAX_GREETING, deadline)
            del buffer[:used]
            await loop.sock_sendall(client, socks.method_reply(socks.NO_AUTH))
            greeted = True
            request, used = await self._socks_read(client, buffer, socks.read_request, socks.MAX_REQUEST, deadline)
            del buffer[:used]
            record.update(target=request.authority[:300])
            try:
                target = parse_target(request.authority, "SOCKS target")
            except HostError as exc:
                raise Refusal(400, str(exc), "target") from None
            record.update(host=target.host, port=target.port)
            decision, dialed = await self._decide_and_dial(state, target, record)
        except socks.SocksError as exc:
            refused, answer = Refusal(400, exc.reason, exc.rule), exc.answer
        except Refusal as exc:
            refused, answer = exc, socks.reply(_socks_code(exc)) if greeted else b""
        else:
            answer = socks.reply(socks.SUCCEEDED)
            await self._tunnel(state, client, target, decision, dialed, answer, bytes(buffer), record, started)
            return True
        record.update(decision=refused.decision, rule=refused.rule, reason=refused.reason)
        record["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
        self._emit(record)
        if answer:
            with contextlib.suppress(OSError):
                await loop.sock_sendall(client, answer)
        return False

    async def _socks_read(
        self,
        client: socket.socket,
        buffer: bytearray,
        parse: Callable[[bytes], _Parsed | None],
        limit: int,
        deadline: float,
    ) -> _Parsed:
        """Read into `buffer` until `parse` gives a value (bounded by `limit` bytes and the deadline)."""
        loop = asyncio.get_running_loop()
        while (parsed := parse(bytes(buffer))) is None:
            if len(buffer) >= limit:  # parse would have had everything it can ask for
                raise socks.SocksError("SOCKS message longer than the protocol allows", b"", "socks:request")
            try:
                chunk = await _receive(client, limit - len(buffer), deadline - loop.time())
            except TimeoutError:
                raise Refusal(408, "SOCKS request not complete in time", "limit:header-time") from None
            if not chunk:
                raise socks.SocksError("the client closed during its SOCKS request", b"", "socks:closed")
            buffer += chunk
        return parsed

    async def _check_tls(
        self,
        state: SessionEgress,
        client: socket.socket,
        target: Target,
        decision: EgressDecision,
        early: bytes,
        record: dict[str, Any],
    ) -> bytes:
        """Read the ClientHello (nothing is forwarded meanwhile) and hold its SNI to the CONNECT host."""
        loop = asyncio.get_running_loop()
        data = early
        deadline = loop.time() + state.limits.header_timeout
        exact_ip_rule = (
            target.literal is not None
            and decision.rule.startswith("allow:")
            and HostRule.parse(decision.rule.removeprefix("allow:")).host == target.host
        )
        while True:
            try:
                hello = read_client_hello(data)
            except NotTls as exc:
                record.update(sni=None)
                raise _TunnelRefusal(f"not TLS on port {target.port}: {exc}", "tls:protocol") from None
            if hello is not None:
                break
            try:
                chunk = await _receive(client, 65536, deadline - loop.time())
            except TimeoutError:
                raise _TunnelRefusal("no TLS ClientHello in time", "tls:timeout") from None
            if not chunk:
                raise _TunnelRefusal("client closed before its ClientHello", "tls:closed")
            data += chunk
        record.update(sni=None if hello.sni is None else hello.sni[:300])
        if target.literal is not None:
            if not exact_ip_rule:
                raise _TunnelRefusal(
                    f"TLS to an IP address ({target.host}) needs an allow rule naming that address", "tls:ip-literal"
                )
            return data
        if hello.sni is None:
            raise _TunnelRefusal("the TLS ClientHello names no server (no SNI)", "tls:no-sni")
        try:
            sni = normalize_name(hello.sni, "SNI")
        except HostError as exc:
            raise _TunnelRefusal(str(exc), "tls:sni") from None
        if sni != target.host:
            raise _TunnelRefusal(f"TLS server name {sni} does not match the CONNECT host {target.host}", "tls:sni")
        return data

    async def _forward(
        self,
        state: SessionEgress,
        conn: h11.Connection,
        client: socket.socket,
        request: h11.Request,
        record: dict[str, Any],
        started: float,
    ) -> bool:
        """One absolute-form request, re-serialized to a fresh upstream connection; True to read another."""
        loop = asyncio.get_running_loop()
        raw_target = request.target.decode("ascii", "replace")
        record.update(target=raw_target[:300])
        if not raw_target.lower().startswith(("http://", "https://")):
            if "://" in raw_target:
                raise Refusal(
                    400, f"scheme {raw_target.split(':', 1)[0][:20]!r} is not proxied (http only)", "http:scheme"
                )
            raise Refusal(400, "a proxy request needs an absolute http:// URL (or CONNECT)", "http:target")
        parts = urlsplit(raw_target)
        if parts.scheme.lower() != "http":
            raise Refusal(400, "scheme 'https' is proxied with CONNECT, not as an absolute-form request", "http:scheme")
        try:
            target = parse_target(parts.netloc, "URL authority", default_port=80)
        except HostError as exc:
            raise Refusal(400, str(exc), "target") from None
        record.update(host=target.host, port=target.port, http_host=target.host)
        names = [name.lower() for name, _ in request.headers]
        if b"upgrade" in names:
            raise Refusal(400, "protocol upgrades (Upgrade, h2c, websockets) are not proxied", "http:upgrade")
        if b"content-length" in names and b"transfer-encoding" in names:
            raise Refusal(400, "both Content-Length and Transfer-Encoding", "http:framing")
        listed = {
            token.strip().lower()
            for name, value in request.headers
            if name.lower() == b"connection"
            for token in value.split(b",")
        }
        headers = [
            (name, value)
            for name, value in request.headers
            if name.lower() not in _HOP_BY_HOP
            and name.lower() not in listed - {b"host"}
            and name.lower() != b"host"
            and not name.lower().startswith(b"x-ringfence-")
        ]
        host_header = str(target) if target.port != 80 else (f"[{target.host}]" if ":" in target.host else target.host)
        headers.insert(0, (b"Host", host_header.encode()))
        if b"content-length" in names:
            headers.append((b"Content-Length", dict(request.headers)[b"content-length"]))
        elif b"transfer-encoding" in names:
            headers.append((b"Transfer-Encoding", b"chunked"))
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        decision, dialed = await self._decide_and_dial(state, target, record)
        upstream = dialed.sock
        up_conn = h11.Connection(h11.CLIENT)
        bytes_up = bytes_down = 0
        state.active += 1
        try:
            await loop.sock_sendall(
                upstream, up_conn.send(h11.Request(method=request.method, target=path.encode(), headers=headers))
            )

            async def body_up() -> None:
                nonlocal bytes_up
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        data = await asyncio.wait_for(loop.sock_recv(client, 65536), state.limits.idle_timeout)
                        conn.receive_data(data)
                        continue
                    if isinstance(event, h11.Data):
                        bytes_up += len(event.data)
                        await loop.sock_sendall(upstream, up_conn.send(h11.Data(data=event.data)))
                    elif isinstance(event, h11.EndOfMessage):
                        await loop.sock_sendall(upstream, up_conn.send(h11.EndOfMessage()))
                        return
                    else:
                        raise h11.RemoteProtocolError(f"unexpected {type(event).__name__} in a request body")

            async def response_down() -> None:
                nonlocal bytes_down
                while True:
                    event = up_conn.next_event()
                    if event is h11.NEED_DATA:
                        data = await asyncio.wait_for(loop.sock_recv(upstream, 262144), state.limits.idle_timeout)
                        up_conn.receive_data(data)
                        continue
                    if isinstance(event, (h11.InformationalResponse, h11.Response)):
                        # Interim answers (100, 103) are passed on as RFC 9110 asks of a proxy; both kinds with
                        # the headers a proxy may pass (an unasked 101 is refused by h11: a 502).
                        kept = relayed_response_headers(event.headers, _DROP_FROM_UPSTREAM, event.status_code)
                        answer = type(event)(status_code=event.status_code, headers=kept, reason=event.reason)
                        await loop.sock_sendall(client, conn.send(answer))
                        if isinstance(event, h11.Response):
                            record.update(status=event.status_code)
                    elif isinstance(event, h11.Data):
                        bytes_down += len(event.data)
                        await loop.sock_sendall(client, conn.send(h11.Data(data=event.data)))
                    elif isinstance(event, h11.EndOfMessage):
                        await loop.sock_sendall(client, conn.send(h11.EndOfMessage()))
                        return
                    else:
                        raise h11.RemoteProtocolError("upstream closed before its response ended")

            uploading = loop.create_task(body_up())
            downloading = loop.create_task(response_down())
            try:
                await asyncio.wait({uploading, downloading}, return_when=asyncio.FIRST_EXCEPTION)
                if uploading.done() and uploading.exception() is not None:
                    # The client's own body is malformed: the upstream got a truncated request and is cut off.
                    problem = uploading.exception()
                    if conn.our_state is h11.SEND_RESPONSE:
                        raise Refusal(400, f"malformed request body: {problem}", "http:body")
                    raise h11.RemoteProtocolError(f"malformed request body: {problem}")
                await downloading
                await asyncio.wait_for(uploading, state.limits.idle_timeout)
            finally:
                # Cancelled AND awaited before the sockets close: a task left pending would later unregister, by
                # descriptor number, whatever socket has reused that number (another connection's reader).
                uploading.cancel()
                downloading.cancel()
                await asyncio.gather(uploading, downloading, return_exceptions=True)
        except (h11.ProtocolError, OSError, TimeoutError) as exc:
            record.update(decision="error", reason=f"upstream exchange failed: {exc}"[:300], rule="upstream")
            record.update(bytes_up=bytes_up, bytes_down=bytes_down)
            record["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
            self._emit(record)
            if conn.our_state is h11.SEND_RESPONSE:  # nothing of the answer sent yet: say what failed
                with contextlib.suppress(OSError):
                    await loop.sock_sendall(
                        client, refusal_bytes(502, "upstream exchange failed", "upstream", raw_target)
                    )
            return False
        finally:
            state.active -= 1
            upstream.close()
        record.update(
            decision="would_deny" if decision.would_deny else "allow",
            reason=decision.reason,
            bytes_up=bytes_up,
            bytes_down=bytes_down,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
        )
        self.metrics.bytes["up"] += bytes_up
        self.metrics.bytes["down"] += bytes_down
        self._emit(record)
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            return True
        return False


class _TunnelRefusal(Refusal):
    """A refusal after the tunnel was accepted (TLS checks): nothing was forwarded; the connection is closed
    (an HTTP answer is no longer possible inside a tunnel)."""

    def __init__(self, reason: str, rule: str) -> None:
        super().__init__(403, reason, rule)


async def _receive(client: socket.socket, size: int, timeout: float) -> bytes:
    """Up to `size` bytes from the client (b"": it closed), waiting at most `timeout` seconds, else TimeoutError
    (at once when no time is left, even if bytes are waiting: a deadline is not extended by a trickle)."""
    if timeout <= 0:
        raise TimeoutError
    try:
        return client.recv(size)  # usually already there: no waiting machinery at all
    except BlockingIOError:
        pass
    async with asyncio.timeout(timeout):
        return await asyncio.get_running_loop().sock_recv(client, size)


def _socks_code(refused: Refusal) -> int:
    """The SOCKS reply for a refusal decided after the request was read."""
    if refused.rule == "dns":
        return socks.HOST_UNREACHABLE
    if refused.rule == "upstream":
        return socks.CONNECTION_REFUSED
    if refused.status in (403, 429, 503):
        return socks.NOT_ALLOWED
    return socks.GENERAL_FAILURE
