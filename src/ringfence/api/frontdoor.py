"""The front door of the API and the console (SECURITY-CASES A1): what a request must be before any route reads it.

Owns: authenticating an API request *before* its body is read (an unauthenticated body is never read: 401 at once),
the body size cap of each route (413 as soon as a length or the bytes received pass it, never after reading it
whole), and the nesting depth of JSON bodies (deep nesting is a 422, never a RecursionError). A pure ASGI
middleware: it buffers a body only up to its cap, then hands it to the application unchanged. `json_too_deep` is
sans-I/O. Knows nothing of routes' meanings: the caps are a table of path patterns.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ringfence.store import accounts
from ringfence.store.db import Store

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

KiB, MiB = 2**10, 2**20
DEFAULT_CAP = 256 * KiB
MAX_HEAD_BYTES = 16 * KiB  # the request line and headers (ringfence.api.http_server bounds them while they arrive)
MAX_DEPTH = 64
# Routes that need more than the default, by method and path pattern (first match wins).
CAPS: tuple[tuple[str, re.Pattern[str], int], ...] = (
    ("POST", re.compile(r"^/v1/sessions/[^/]+/prompts$"), 4 * MiB),  # a prompt may carry pasted code
    ("POST", re.compile(r"^/ui/sessions/[^/]+/prompt$"), 4 * MiB),
    ("POST", re.compile(r"^/v1/policy/explain$"), 4 * MiB),  # a scenario's history
    ("POST", re.compile(r"^/ui/login$"), 4 * KiB),  # a token, and nothing else, from anyone
)
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def cap_of(method: str, path: str) -> int:
    for wanted, pattern, cap in CAPS:
        if method == wanted and pattern.match(path):
            return cap
    return DEFAULT_CAP


def json_too_deep(data: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether a JSON text nests arrays and objects deeper than `limit` (strings and escapes understood; the text
    need not be valid JSON: what is not is refused later, by the parser, with its own message)."""
    depth = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return False


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {name.lower(): value for name, value in scope.get("headers", [])}


async def _refuse(
    send: Send, status: int, code: str, message: str, extra: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# Sent with every answer (A2): nothing of ringfence is ever framed, sniffed or told where it was linked from; each
# kind of page may load only what it needs from its own origin (the console and the API docs have no inline script
# but the docs' starter, and no third party at all).
_CSP = {
    "/ui": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'",
    "/docs": "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'",
    "": "default-src 'none'; frame-ancestors 'none'",
}


def security_headers(path: str) -> list[tuple[bytes, bytes]]:
    policy = next(value for prefix, value in _CSP.items() if path.startswith(prefix))
    return [
        (b"x-frame-options", b"DENY"),
        (b"content-security-policy", policy.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"same-origin"),  # not no-referrer: browsers then send `Origin: null` on forms
    ]


class FrontDoor:
    """Wraps the whole application (API and console)."""

    def __init__(self, app: ASGIApp, store: Store) -> None:
        self.app, self.store = app, store

    async def __call__(self, scope: Scope, receive: Receive, raw_send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, raw_send)
            return
        added = security_headers(scope["path"])

        async def send(message: Message) -> None:  # every answer, ours and the application's
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *added]
            await raw_send(message)

        head = len(scope.get("raw_path") or b"") + sum(len(n) + len(v) + 4 for n, v in scope.get("headers", []))
        if head > MAX_HEAD_BYTES:  # h11 bounds a head that arrives in pieces; this one came whole
            await _refuse(send, 431, "too_large", f"the request's head is over {MAX_HEAD_BYTES} bytes")
            return
        if scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        headers = _headers(scope)
        length_text = headers.get(b"content-length")
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        has_body = chunked or (length_text is not None and length_text.strip() not in (b"", b"0"))
        if has_body and path.startswith("/v1/"):
            scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
            found = accounts.authenticate(self.store, token.strip()) if scheme.lower() == "bearer" and token else None
            if found is None:  # before a byte of the body is read
                await _refuse(
                    send, 401, "unauthorized", "send 'Authorization: Bearer <token>' (the body was not read)",
                    ((b"www-authenticate", b"Bearer"),),
                )  # fmt: skip
                return
            scope.setdefault("state", {})["principal"] = found
        if not has_body:
            await self.app(scope, receive, send)
            return
        cap = cap_of(scope["method"], path)
        if length_text is not None and not chunked:
            try:
                declared = int(length_text)
            except ValueError:
                await _refuse(send, 400, "invalid", "Content-Length is not a number")
                return
            if declared > cap:
                await _refuse(send, 413, "too_large", f"this route takes a body of at most {cap} bytes")
                return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > cap:
                await _refuse(send, 413, "too_large", f"this route takes a body of at most {cap} bytes")
                return
            if not message.get("more_body", False):
                break
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if (content_type.endswith(b"json") or path == "/v1/policy/explain") and json_too_deep(bytes(body)):
            await _refuse(send, 422, "invalid", f"the JSON body nests deeper than {MAX_DEPTH} levels")
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
