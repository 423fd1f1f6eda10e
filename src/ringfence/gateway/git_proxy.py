"""The credential gateway: smart HTTP for one repository per session and the session's model API, with the
credential injected upstream, and pushes held to the session's branch before a byte is forwarded.

Owns: listeners (one session each: the socket is the identity), reading requests with h11 (the same strict head
checks as the egress proxy), routing (ringfence.gateway.routes), the push check (receive_pack), the upstream
exchange over HTTP(S) with the credential added there and only there, streaming bodies both ways, and one audit
record per request. What the client sends as Authorization is dropped; an upstream 401 becomes a 502, so a git
client in the sandbox never learns that a credential exists, let alone sees one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import h11

from ringfence.egress.audit import BatchedAudit
from ringfence.gateway.credentials import CredentialError, CredentialSource, StaticToken
from ringfence.gateway.host_api import judge_api_call
from ringfence.gateway.pktline import FLUSH, encode
from ringfence.gateway.receive_pack import PushHead, PushHeadReader, PushRefused, check_push
from ringfence.gateway.routes import GitRoute, Repository, RouteRefused, route_git
from ringfence.gateway.usage import TokenBudget, UsageMeter, estimated_tokens, requested_model
from ringfence.net.dial import Dialer, DialRefused
from ringfence.net.hostport import HostError, url_target
from ringfence.net.httphead import (
    DENY_HEADER,
    HeadError,
    HeadGuard,
    next_request,
    refusal,
    relayed_response_headers,
)
from ringfence.store.crypto import Secret

log = logging.getLogger("ringfence.gateway")
_FORWARDED = frozenset({b"content-type", b"accept", b"accept-encoding", b"git-protocol", b"user-agent"})
_API_FORWARDED = frozenset({b"content-type", b"accept", b"user-agent", b"x-github-api-version"})
_API_BODY_MAX = 1 << 20
_RECORD_MAX = 16 * 2**20  # what a recorded model exchange keeps of each body (the store's content limit)
_MODEL_FORWARDED = frozenset(
    {b"content-type", b"accept", b"anthropic-version", b"anthropic-beta", b"user-agent", b"x-stainless-lang"}
)
_DROP_FROM_UPSTREAM = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"set-cookie", b"www-authenticate",
     DENY_HEADER.lower().encode()}  # an upstream cannot speak for the gateway
)  # fmt: skip
_REFUSED_BODY_DRAIN = 64 * 2**20  # what is read (and thrown away) of a refused push so the client sees the answer
_CHUNK = 256 * 1024


Credential = StaticToken  # the generic adapter's credential, under its older name


@dataclass(frozen=True)
class GitSession:
    session_id: str
    repository: Repository
    branch: str
    upstream: str  # base URL of the host: the repository is UPSTREAM/OWNER/NAME.git
    credential: CredentialSource
    api_url: str | None = None  # the host's REST/GraphQL API (e.g. https://api.github.com), fronted at /api

    def __post_init__(self) -> None:
        parts = urlsplit(self.upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ValueError(f"upstream {self.upstream!r} is not an http(s) base URL")
        if parts.username or parts.password:
            raise ValueError("the upstream URL must not carry a credential: give it with --token-file")


@dataclass(frozen=True)
class ModelUpstream:
    """A model provider's API for a session: where it is, and the key the gateway adds (the sandbox holds only a
    placeholder). `header` is how the provider takes the key (Anthropic: x-api-key)."""

    provider: str
    base_url: str
    key: Secret
    header: str = "x-api-key"
    scheme: str = ""  # put before the key in the header's value ("Bearer " for OpenAI's API)
    # Called after each exchange with the request and answer bodies when the policy keeps this session's content;
    # None (zero data retention, or no consent) keeps nothing: the bodies are only streamed.
    recorder: Callable[[bytes, bytes], None] | None = None

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.query:
            raise ValueError(f"model base URL {self.base_url!r} is not a plain http(s) URL")
        if not self.provider.isidentifier():
            raise ValueError(f"model provider {self.provider!r} is not a simple name")


# How each kind of provider takes its key (ringfence.store.providers.KINDS): header and what goes before the key.
PROVIDER_AUTH = {"anthropic": ("x-api-key", ""), "openai": ("authorization", "Bearer ")}


def model_upstream(provider: str, kind: str, base_url: str, key: Secret) -> ModelUpstream:
    header, scheme = PROVIDER_AUTH[kind]
    return ModelUpstream(provider, base_url, key, header, scheme)


@dataclass(frozen=True)
class GatewayLimits:
    max_request_line: int = 8 * 1024
    max_header_bytes: int = 64 * 1024
    header_timeout: float = 30.0
    idle_timeout: float = 600.0


class _Hidden(bytes):
    """A credential header value: bytes for h11, but its repr never shows it (tracebacks, debuggers, test
    reports print locals)."""

    def __repr__(self) -> str:
        return "b'[redacted]'"


class _Refused(Exception):
    def __init__(self, status: int, reason: str, rule: str) -> None:
        super().__init__(reason)
        self.status, self.reason, self.rule = status, reason, rule


def report_refusal(head: PushHead, reason: str) -> bytes:
    """A receive-pack answer that refuses every ref with `reason`, so `git push` prints it ('remote rejected')."""
    lines = [encode(b"unpack ok\n")] + [encode(f"ng {ref} {reason}\n".encode()) for ref in head.refs] + [FLUSH]
    inner = b"".join(lines)
    if "side-band-64k" in head.capabilities or "side-band" in head.capabilities:
        size = 65515 if "side-band-64k" in head.capabilities else 995
        framed = b"".join(encode(b"\x01" + inner[i : i + size]) for i in range(0, len(inner), size))
        return framed + FLUSH
    return inner


class Gateway:
    def __init__(
        self,
        audit: BatchedAudit | None = None,
        *,
        dialer: Dialer,
        limits: GatewayLimits | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        upstream_ssl: ssl.SSLContext | None = None,
    ) -> None:
        self.audit, self.clock, self.dialer = audit, clock, dialer
        self.limits = limits or GatewayLimits()
        self.sessions: dict[str, GitSession] = {}
        self.models: dict[str, dict[str, ModelUpstream]] = {}
        self.budgets: dict[str, TokenBudget] = {}  # the sessions that have a model token budget
        self._servers: dict[str, list[asyncio.Server]] = {}
        self._ssl = upstream_ssl

    def add_session(
        self, session: GitSession, models: tuple[ModelUpstream, ...] = (), *, token_budget: int | None = None
    ) -> None:
        """`token_budget`: the most model tokens (input and output, as the providers report them) the session may
        use; past it, model calls answer 429 with the reason."""
        if session.session_id in self.sessions:
            raise ValueError(f"session {session.session_id} already has a gateway route")
        self.sessions[session.session_id] = session
        self.models[session.session_id] = {m.provider: m for m in models}
        if token_budget is not None:
            self.budgets[session.session_id] = TokenBudget(token_budget)
        self._servers[session.session_id] = []

    async def listen_tcp(self, session_id: str, host: str, port: int) -> tuple[str, int]:
        session = self.sessions[session_id]
        server = await asyncio.start_server(lambda r, w: self._client(session, r, w), host, port)
        self._servers[session_id].append(server)
        bound = server.sockets[0].getsockname()
        return bound[0], bound[1]

    async def listen_unix(self, session_id: str, path: Path) -> None:
        session = self.sessions[session_id]
        server = await asyncio.start_unix_server(lambda r, w: self._client(session, r, w), str(path))
        path.chmod(0o600)
        self._servers[session_id].append(server)

    async def remove_session(self, session_id: str) -> None:
        """Stop serving a session and discard (revoke, where the host allows) the credential minted for it."""
        session = self.sessions.pop(session_id, None)
        self.models.pop(session_id, None)
        self.budgets.pop(session_id, None)
        if session is not None:
            with contextlib.suppress(Exception):
                await session.credential.discard()
        for server in self._servers.pop(session_id, []):
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1)

    async def close(self) -> None:
        for session_id in list(self._servers):
            await self.remove_session(session_id)

    # -- one client connection ----------------------------------------------------------------------------------

    def _emit(self, record: dict[str, Any]) -> None:
        if self.audit is not None:
            self.audit.record(record)

    async def _client(self, session: GitSession, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_header_bytes)
        try:
            while True:
                record: dict[str, Any] = {
                    "kind": "gateway.request",
                    "session": session.session_id,
                    "at": self.clock().isoformat(),
                    "route": "git",
                    "repository": str(session.repository),
                }
                started = time.perf_counter()
                try:
                    request = await self._read_head(conn, reader)
                    if request is None:
                        return
                    record.update(method=request.method.decode("ascii", "replace"))
                    record.update(target=request.target.decode("ascii", "replace")[:300])
                    again = await self._serve(session, conn, reader, writer, request, record)
                except _Refused as refused:
                    record.update(decision="deny", rule=refused.rule, reason=refused.reason)
                    record["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
                    self._emit(record)
                    if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):  # nothing of an answer sent yet
                        what = f"{record.get('method', 'request')} {record.get('target', '')}".strip()
                        writer.write(refusal(refused.status, refused.reason, refused.rule, who="gateway", what=what))
                        await writer.drain()
                    return
                record["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
                self._emit(record)
                if not again:
                    return
        except (OSError, asyncio.IncompleteReadError, h11.ProtocolError, TimeoutError):
            return
        finally:
            writer.close()

    async def _read_head(self, conn: h11.Connection, reader: asyncio.StreamReader) -> h11.Request | None:
        guard = HeadGuard(self.limits.max_request_line, self.limits.max_header_bytes)
        try:
            async with asyncio.timeout(self.limits.header_timeout):
                while True:
                    event = next_request(conn, self.limits.max_header_bytes)
                    if event is None or isinstance(event, h11.Request):
                        return event
                    data = await reader.read(65536)
                    guard.feed(data)
                    conn.receive_data(data)
        except HeadError as exc:
            raise _Refused(exc.status, exc.reason, exc.rule) from None
        except TimeoutError:
            raise _Refused(408, "request head not complete in time", "limit:header-time") from None

    async def _body(self, conn: h11.Connection, reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
        """The request body as it arrives (h11 removes the chunked framing)."""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await asyncio.wait_for(reader.read(_CHUNK), self.limits.idle_timeout))
                continue
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return
            else:
                raise _Refused(400, f"unexpected {type(event).__name__} in a request body", "http:body")

    async def _serve(
        self,
        session: GitSession,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        request: h11.Request,
        record: dict[str, Any],
    ) -> bool:
        method = request.method.decode("ascii", "replace")
        if request.target.startswith(b"/model/"):
            return await self._model(session, conn, reader, writer, request, record)
        if request.target.startswith(b"/api/"):
            return await self._host_api(session, conn, reader, writer, request, record)
        try:
            route = route_git(method, request.target, session.repository)
        except RouteRefused as exc:
            raise _Refused(403, str(exc), "route") from None
        record.update(service=route.service, operation="advertise" if route.advertise else "rpc")
        headers = {name.lower(): value for name, value in request.headers}
        encoding = headers.get(b"content-encoding", b"").strip().lower()
        body = self._body(conn, reader)
        first: bytes = b""
        if route.writes and not route.advertise:
            if encoding not in (b"", b"identity", b"gzip"):
                raise _Refused(415, f"content encoding {encoding[:40]!r} is not accepted for a push", "git:encoding")
            body = _gunzip(body) if encoding == b"gzip" else body
            head, first = await self._push_head(body)
            record.update(refs=list(head.refs)[:50])
            try:
                check_push(head, session.branch)
            except PushRefused as exc:
                await _drain(body)
                record.update(decision="deny", rule="git:push", reason=exc.reason)
                if exc.malformed:
                    raise _Refused(400, exc.reason, "git:push") from None
                payload = report_refusal(head, f"ringfence: {exc.reason}")
                response = [
                    ("Content-Type", "application/x-git-receive-pack-result"),
                    ("Content-Length", str(len(payload))),
                ]
                writer.write(conn.send(h11.Response(status_code=200, headers=response)))
                writer.write(conn.send(h11.Data(data=payload)) + conn.send(h11.EndOfMessage()))
                await writer.drain()
                return False
            encoding = b""  # forwarded decompressed
        return await self._exchange(session, conn, writer, request, route, body, first, encoding, record)

    async def _push_head(self, body: AsyncIterator[bytes]) -> tuple[PushHead, bytes]:
        """Read the push head from the body (nothing is forwarded meanwhile); returns it and every byte read so far
        (head and the start of the pack), which go upstream first if the push is allowed."""
        reader = PushHeadReader()
        seen = bytearray()
        try:
            async for chunk in body:
                seen += chunk
                head = reader.feed(chunk)
                if head is not None:
                    return head, bytes(seen)
        except PushRefused as exc:
            raise _Refused(400, exc.reason, "git:push") from None
        raise _Refused(400, "the push ended before its head did", "git:push")

    async def _exchange(
        self,
        session: GitSession,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        request: h11.Request,
        route: GitRoute,
        body: AsyncIterator[bytes],
        first: bytes,
        encoding: bytes,
        record: dict[str, Any],
    ) -> bool:
        base = urlsplit(session.upstream)
        endpoint = "info/refs" if route.advertise else route.service
        target = f"{base.path.rstrip('/')}/{session.repository.owner}/{session.repository.name}.git/{endpoint}"
        if route.advertise:
            target += f"?service={route.service}"
        extra = [(b"Content-Encoding", encoding)] if encoding else []
        try:
            authorization = await session.credential.authorization(self.clock().timestamp())
        except CredentialError as exc:
            raise _Refused(502, str(exc), "upstream:credential") from None
        if authorization:
            extra.append((b"Authorization", _Hidden(authorization)))  # here, and nowhere else
        record.update(rule="git:" + route.service)
        return await self._upstream(
            session.upstream, target, request, _FORWARDED, extra, body, first, conn, writer, record, "repository host"
        )

    async def _model(
        self,
        session: GitSession,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        request: h11.Request,
        record: dict[str, Any],
    ) -> bool:
        """`/model/<provider>/<path>`: the provider's API with the session's key put in by the gateway."""
        text = request.target.decode("ascii", "replace")
        _, _, rest = text.partition("/model/")
        provider, _, path = rest.partition("/")
        record.update(route="model", provider=provider[:40])
        upstream = self.models.get(session.session_id, {}).get(provider)
        if upstream is None:
            raise _Refused(
                403,
                f"model provider {provider[:40]!r} is not configured for this session: an organization admin sets it "
                f"with PUT /v1/organizations/ORG/providers/{provider[:40]} (a consumer: /v1/users/USER/providers/...), "
                "or the operator with [providers] in ringfence.toml",
                "model:provider",
            )
        if any(c in text for c in "%\\#") or any(seg in (".", "..") for seg in path.split("?")[0].split("/")):
            raise _Refused(400, "model path holds escapes or dot segments", "model:path")
        if request.method not in (b"GET", b"POST"):
            raise _Refused(
                405, f"{request.method.decode(errors='replace')} is not forwarded to a model API", "model:method"
            )
        budget = self.budgets.get(session.session_id)
        refused = budget.admit() if budget is not None else None
        if refused is not None:
            raise _Refused(429, refused, "model:budget")
        base = urlsplit(upstream.base_url)
        target = f"{base.path.rstrip('/')}/{path}"
        record.update(rule=f"model:{provider}")
        kept_up = bytearray() if upstream.recorder is not None else None
        kept_down = bytearray() if upstream.recorder is not None else None
        head = bytearray()  # the request's first bytes, for the model it names (never kept)
        meter = UsageMeter()

        async def body() -> AsyncIterator[bytes]:
            async for chunk in self._body(conn, reader):
                if len(head) < 65536:
                    head.extend(chunk[: 65536 - len(head)])
                if kept_up is not None and len(kept_up) < _RECORD_MAX:
                    kept_up.extend(chunk[: _RECORD_MAX - len(kept_up)])
                yield chunk

        charged = 0
        try:
            again = await self._upstream(
                upstream.base_url,
                target,
                request,
                _MODEL_FORWARDED,
                [(upstream.header.encode(), _Hidden((upstream.scheme + upstream.key.reveal()).encode()))],  # only here
                body(),
                b"",
                conn,
                writer,
                record,
                "model provider",
                kept_down,
                meter,
            )
            meter.finish()
            tokens = {"input_tokens": meter.input_tokens, "output_tokens": meter.output_tokens}
            record.update(model=requested_model(bytes(head)), **{k: v for k, v in tokens.items() if v is not None})
            charged = meter.total
            if meter.input_tokens is None and meter.output_tokens is None:  # counted by size, never as free
                charged = estimated_tokens(record.get("bytes_up", 0) + record.get("bytes_down", 0))
                record.update(estimated_tokens=charged)
        finally:
            if budget is not None:
                budget.done(charged)
        if upstream.recorder is not None and kept_up is not None and kept_down is not None:
            upstream.recorder(bytes(kept_up), bytes(kept_down))
            record.update(recorded=True)
        return again

    async def _host_api(
        self,
        session: GitSession,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        request: h11.Request,
        record: dict[str, Any],
    ) -> bool:
        """`/api/<path>`: the host's API, for the few calls a session needs (ringfence.gateway.host_api)."""
        record.update(route="api")
        if session.api_url is None:
            raise _Refused(403, "no host API is configured for this session", "api:none")
        path = request.target.decode("ascii", "replace")[len("/api") :]
        body = bytearray()
        async for chunk in self._body(conn, reader):
            body += chunk
            if len(body) > _API_BODY_MAX:
                raise _Refused(413, f"API request body over {_API_BODY_MAX} bytes", "api:size")
        method = request.method.decode("ascii", "replace")
        decision = judge_api_call(method, path, bytes(body), session.repository, session.branch)
        record.update(operation=decision.operation)
        if not decision.allowed:
            raise _Refused(403, decision.reason, f"api:{decision.operation}")
        try:
            authorization = await session.credential.authorization(self.clock().timestamp(), api=True)
        except CredentialError as exc:
            raise _Refused(502, str(exc), "upstream:credential") from None
        base = urlsplit(session.api_url)
        record.update(rule=f"api:{decision.operation}")

        async def nothing() -> AsyncIterator[bytes]:
            return
            yield b""

        return await self._upstream(
            session.api_url,
            f"{base.path.rstrip('/')}{path}",
            request,
            _API_FORWARDED,
            [(b"Authorization", _Hidden(authorization))] if authorization else [],  # here, and nowhere else
            nothing(),
            bytes(body),
            conn,
            writer,
            record,
            "repository host API",
        )

    async def _upstream(
        self,
        base_url: str,
        target: str,
        request: h11.Request,
        forwarded: frozenset[bytes],
        extra: list[tuple[bytes, bytes]],
        body: AsyncIterator[bytes],
        first: bytes,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        record: dict[str, Any],
        who: str,
        keep: bytearray | None = None,
        meter: UsageMeter | None = None,
    ) -> bool:
        """Send `request` to `base_url` + `target` with only the `forwarded` client headers plus `extra`, stream
        the body up and the answer down (each piece written as it arrives: server-sent events are not held).
        `keep`, when given, also collects the answer's body (bounded) for the session's recorder."""
        base = urlsplit(base_url)
        secure = base.scheme == "https"
        assert base.hostname is not None
        try:
            # Through the operator's address policy, as the egress proxy dials (T4): the address judged is the
            # address dialed; a host the policy refuses is a 403 naming why, and nothing is sent to it.
            dialed = await self.dialer.connect(url_target(base_url))
        except HostError as exc:
            raise _Refused(403, f"the {who}'s address cannot be read: {exc}", "upstream:address") from None
        except DialRefused as exc:
            if exc.rule in ("upstream", "dns"):
                raise _Refused(502, f"cannot reach the {who}", "upstream") from None
            raise _Refused(403, f"the {who} is not reachable from this server: {exc.reason}", exc.rule) from None
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(
                    sock=dialed.sock,
                    ssl=(self._ssl or ssl.create_default_context()) if secure else None,
                    server_hostname=base.hostname if secure else None,
                ),
                30,
            )
        except (OSError, TimeoutError):
            dialed.sock.close()
            raise _Refused(502, f"cannot reach the {who}", "upstream") from None
        up = h11.Connection(h11.CLIENT)
        bytes_up = bytes_down = 0
        try:
            headers = [(b"Host", (base.netloc or base.hostname).encode())]
            headers += [(n, v) for n, v in request.headers if n.lower() in forwarded]
            has_body = request.method in (b"POST", b"PUT", b"PATCH")
            if has_body:
                headers.append((b"Transfer-Encoding", b"chunked"))
            headers += extra
            up_writer.write(up.send(h11.Request(method=request.method, target=target.encode(), headers=headers)))
            if has_body:
                if first:
                    bytes_up += len(first)
                    up_writer.write(up.send(h11.Data(data=first)))
                async for chunk in body:
                    bytes_up += len(chunk)
                    up_writer.write(up.send(h11.Data(data=chunk)))
                    await up_writer.drain()
                up_writer.write(up.send(h11.EndOfMessage()))
            await up_writer.drain()
            while True:
                event = up.next_event()
                if event is h11.NEED_DATA:
                    up.receive_data(await asyncio.wait_for(up_reader.read(_CHUNK), self.limits.idle_timeout))
                    continue
                if isinstance(event, (h11.InformationalResponse, h11.Response)):
                    if event.status_code in (401, 407):
                        raise _Refused(502, f"the {who} refused the gateway's credential", "upstream:auth")
                    # Interim answers (100, 103 Early Hints) are passed on as RFC 9110 asks of an intermediary;
                    # both kinds with the headers it may pass (an unasked 101 is refused by h11: a 502).
                    kept = relayed_response_headers(event.headers, _DROP_FROM_UPSTREAM, event.status_code)
                    writer.write(conn.send(type(event)(status_code=event.status_code, headers=kept)))
                    await writer.drain()
                    if isinstance(event, h11.Response):
                        record.update(status=event.status_code)
                        if meter is not None:  # h11 gives header names in lower case
                            kind = next((v for n, v in event.headers if n == b"content-type"), b"")
                            meter.begin(kind.decode("latin-1"))
                elif isinstance(event, h11.Data):
                    bytes_down += len(event.data)
                    if keep is not None and len(keep) < _RECORD_MAX:
                        keep.extend(event.data[: _RECORD_MAX - len(keep)])
                    if meter is not None:
                        meter.feed(event.data)
                    writer.write(conn.send(h11.Data(data=event.data)))
                    await writer.drain()
                elif isinstance(event, h11.EndOfMessage):
                    writer.write(conn.send(h11.EndOfMessage()))
                    await writer.drain()
                    break
                else:
                    raise _Refused(502, f"the {who} closed before its answer ended", "upstream")
        except (OSError, h11.ProtocolError, TimeoutError) as exc:
            raise _Refused(502, f"{who} exchange failed: {type(exc).__name__}", "upstream") from None
        finally:
            up_writer.close()
        record.update(decision="allow", bytes_up=bytes_up, bytes_down=bytes_down)
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            return True
        return False


async def _gunzip(body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Decompress a gzip body as it streams, in bounded pieces (a small body cannot become a huge buffer)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        async for chunk in body:
            data = inflater.decompress(chunk, _CHUNK)
            while data:
                yield data
                data = inflater.decompress(inflater.unconsumed_tail, _CHUNK)
        if not inflater.eof:
            raise _Refused(400, "the gzip body ended early", "git:encoding")
    except zlib.error as exc:
        raise _Refused(400, f"the gzip body is corrupt: {exc}", "git:encoding") from None


async def _drain(body: AsyncIterator[bytes]) -> None:
    """Read and discard the rest of a refused body (bounded), so the client reads our answer, not a reset."""
    total = 0
    with contextlib.suppress(Exception):
        async for chunk in body:
            total += len(chunk)
            if total > _REFUSED_BODY_DRAIN:
                return
