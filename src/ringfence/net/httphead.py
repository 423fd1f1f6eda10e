"""Request heads, read strictly: the checks both proxies make on raw head bytes before h11 parses them, and h11's
answers turned into refusals.

Owns: `refusal` (the answer every ringfence proxy gives when it refuses), `HeadGuard` (request-line and head size
limits, and what h11 would accept but a proxy must refuse: obs-fold and bare LF line endings, SECURITY-CASES H2)
and `next_request` (one h11 event as a request, a close, a need for more bytes, or a HeadError naming the status
and rule). Pure.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

import h11

DENY_HEADER = "X-Ringfence-Deny"  # on every refusal ringfence answers; stripped from anything an upstream sends
_REASONS = {400: "Bad Request", 403: "Forbidden", 405: "Method Not Allowed", 408: "Request Timeout",
            413: "Content Too Large", 414: "URI Too Long", 415: "Unsupported Media Type", 429: "Too Many Requests",
            431: "Request Header Fields Too Large", 502: "Bad Gateway", 503: "Service Unavailable"}  # fmt: skip


def _clean(text: str, limit: int = 300) -> str:
    """A header-safe rendering: printable ASCII only, bounded."""
    return "".join(c if " " <= c <= "~" else "?" for c in text)[:limit]


def refusal(status: int, reason: str, rule: str, *, who: str, what: str, hint: str = "") -> bytes:
    """A whole refusal, as raw bytes (usable whatever state the parser is in): the status, the deny header with
    the reason, and a short body naming the rule, for a person or an agent to act on. Closes the connection."""
    body = f"ringfence {who} refused {_clean(what, 200)}\nreason: {_clean(reason)}\nrule: {_clean(rule)}\n"
    if hint:
        body += hint + "\n"
    payload = body.encode()
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n{DENY_HEADER}: {_clean(reason)}\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + payload


class HeadError(Exception):
    """A request head that is refused: `status`, a `reason` a person can act on, and the `rule` for the audit."""

    def __init__(self, status: int, reason: str, rule: str) -> None:
        super().__init__(reason)
        self.status, self.reason, self.rule = status, reason, rule


class HeadGuard:
    def __init__(self, max_line: int, max_head: int) -> None:
        self.max_line, self.max_head = max_line, max_head
        self._head = b""
        self._line_done = False

    def feed(self, data: bytes) -> None:
        """Check the head bytes received so far (call before handing `data` to h11)."""
        head = self._head + data
        if not self._line_done:
            newline = head.find(b"\n")
            self._line_done = newline >= 0
            if (newline if self._line_done else len(head)) > self.max_line:
                raise HeadError(414, f"request line over {self.max_line} bytes", "limit:request-line")
        end = head.find(b"\r\n\r\n")
        checked = head if end < 0 else head[: end + 4]
        if b"\n " in checked or b"\n\t" in checked:
            raise HeadError(400, "obs-fold (a header line continued on the next line) is not accepted", "http:parse")
        if checked.count(b"\n") != checked.count(b"\r\n"):
            raise HeadError(400, "bare LF line endings are not accepted (CRLF only)", "http:parse")
        if (end if end >= 0 else len(head)) > self.max_head:
            raise HeadError(431, f"request head over {self.max_head} bytes", "limit:header")
        self._head = b"" if end >= 0 else head  # complete: what follows is a body or the next request, h11's

    def reset(self) -> None:
        self._head, self._line_done = b"", False


def next_request(conn: h11.Connection, max_head: int) -> h11.Request | type[h11.NEED_DATA] | None:
    """The next request on `conn`, None if the client closed cleanly, or NEED_DATA."""
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError as exc:
        if "exceeded" in str(exc) or "maximum" in str(exc):
            raise HeadError(431, f"request head over {max_head} bytes", "limit:header") from None
        raise HeadError(400, f"malformed request: {exc}", "http:parse") from None
    if isinstance(event, h11.Request):
        names = [name.lower() for name, _ in event.headers]
        if b"content-length" in names and b"transfer-encoding" in names:
            # RFC 9112 lets a server pick one; a proxy in front of another server must not guess (H1).
            raise HeadError(400, "both Content-Length and Transfer-Encoding", "http:framing")
        return event
    if isinstance(event, h11.ConnectionClosed):
        return None
    if event is h11.NEED_DATA:
        return h11.NEED_DATA
    raise HeadError(400, f"unexpected {type(event).__name__} before a request", "http:parse")


def relayed_response_headers(
    headers: Iterable[tuple[bytes, bytes]], drop: Collection[bytes], status: int
) -> list[tuple[bytes, bytes]]:
    """An upstream response's headers as a proxy passes them on: those named (lower case) in `drop` removed, the
    framing left to h11 except a Content-Length, which is kept (a HEAD answer or a 304 needs it) unless
    - the response also has a Transfer-Encoding: h11 framed the body by the coding, and RFC 9112 (6.3) has an
      intermediary remove the length before forwarding; kept, it would promise the client a body of another size;
    - the status is 1xx or 204, which never have a body and must not carry a length (RFC 9110, 8.6): a client
      that believed one would read the next response as this one's body."""
    kept = [(name, value) for name, value in headers if name.lower() not in drop and name.lower() != b"content-length"]
    lengths = [value for name, value in headers if name.lower() == b"content-length"]
    coded = any(name.lower() == b"transfer-encoding" for name, _ in headers)
    if lengths and not coded and status >= 200 and status != 204:
        kept.append((b"Content-Length", lengths[-1]))
    return kept
