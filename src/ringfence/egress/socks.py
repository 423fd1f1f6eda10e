"""SOCKS5 (RFC 1928) as the egress proxy speaks it: CONNECT only, no authentication, names resolved by the proxy.

Owns: reading a client's method greeting and its request from bytes (sans-I/O: each reader says "need more
bytes", gives the parsed value and how many bytes it used, or raises `SocksError` carrying the bytes to answer
with), and the reply bytes. The session is known from the listener, so the only method offered is "no
authentication"; BIND and UDP ASSOCIATE are refused (a sandbox gets TCP out, nothing in, no UDP). A name is
handed on as text for the same strict host parsing the HTTP side uses, so `socks5h://` and CONNECT reach the
same decision for the same target. Written by hand: the maintained SOCKS libraries are clients, or servers that
own the sockets and the dialing, which must stay the proxy's (address checks, limits, audit).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

VERSION = 5
NO_AUTH = 0x00
NO_ACCEPTABLE = 0xFF
CONNECT = 1
_COMMANDS = {1: "CONNECT", 2: "BIND", 3: "UDP ASSOCIATE"}
_IPV4, _NAME, _IPV6 = 1, 3, 4

# Reply codes (RFC 1928, section 6).
SUCCEEDED = 0x00
GENERAL_FAILURE = 0x01
NOT_ALLOWED = 0x02
HOST_UNREACHABLE = 0x04
CONNECTION_REFUSED = 0x05
COMMAND_NOT_SUPPORTED = 0x07
ADDRESS_TYPE_NOT_SUPPORTED = 0x08

MAX_GREETING = 2 + 255
MAX_REQUEST = 4 + 1 + 255 + 2


class SocksError(ValueError):
    """The client's bytes cannot be served; `answer` is what to tell it (b"": close without a word, because the
    client is not speaking SOCKS5 or has gone)."""

    def __init__(self, reason: str, answer: bytes, rule: str) -> None:
        super().__init__(reason)
        self.reason, self.answer, self.rule = reason, answer, rule


@dataclass(frozen=True, slots=True)
class SocksRequest:
    """A CONNECT request: `authority` is `host:port` (IPv6 in brackets), ready for the proxy's target parser."""

    authority: str


def read_greeting(data: bytes) -> int | None:
    """Bytes used by a complete greeting that offers "no authentication", or None if more bytes are needed."""
    if len(data) < 2:
        return None
    if data[0] != VERSION:
        raise SocksError(f"SOCKS version {data[0]} is not 5", b"", "socks:version")
    count = data[1]
    if count == 0:
        raise SocksError("the greeting offers no authentication method", method_reply(NO_ACCEPTABLE), "socks:auth")
    if len(data) < 2 + count:
        return None
    if NO_AUTH not in data[2 : 2 + count]:
        raise SocksError(
            "the greeting does not offer 'no authentication' (the session is known from the listener; there is "
            "nothing to log in with)",
            method_reply(NO_ACCEPTABLE),
            "socks:auth",
        )
    return 2 + count


def read_request(data: bytes) -> tuple[SocksRequest, int] | None:
    """The request and the bytes it used, or None if more bytes are needed."""
    if len(data) < 5:
        return None
    if data[0] != VERSION:
        raise SocksError(f"request version {data[0]} is not 5", reply(GENERAL_FAILURE), "socks:version")
    command, reserved, kind = data[1], data[2], data[3]
    if command != CONNECT:
        name = _COMMANDS.get(command, f"command {command}")
        raise SocksError(f"SOCKS {name} is not supported (CONNECT only)", reply(COMMAND_NOT_SUPPORTED), "socks:command")
    if reserved != 0:
        raise SocksError(f"the reserved byte is {reserved}, not 0", reply(GENERAL_FAILURE), "socks:request")
    if kind == _IPV4:
        size, start = 4, 4
    elif kind == _IPV6:
        size, start = 16, 4
    elif kind == _NAME:
        size, start = data[4], 5
        if size == 0:
            raise SocksError("the requested name is empty", reply(GENERAL_FAILURE), "socks:request")
    else:
        raise SocksError(f"address type {kind} is not supported", reply(ADDRESS_TYPE_NOT_SUPPORTED), "socks:address")
    end = start + size + 2
    if len(data) < end:
        return None
    raw, port = data[start : start + size], int.from_bytes(data[end - 2 : end], "big")
    if kind == _IPV4:
        host = str(ipaddress.IPv4Address(raw))
    elif kind == _IPV6:
        host = f"[{ipaddress.IPv6Address(raw)}]"
    else:
        try:
            host = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise SocksError("the requested name is not UTF-8", reply(GENERAL_FAILURE), "socks:request") from None
        if ":" in host:  # an IPv6 literal sent as a name: bracket it, as the target parser expects
            host = f"[{host}]"
    return SocksRequest(f"{host}:{port}"), end


def method_reply(method: int) -> bytes:
    return bytes((VERSION, method))


def reply(code: int) -> bytes:
    """A reply with the bound address 0.0.0.0:0: clients do not use it for CONNECT, and the proxy's own outbound
    address is none of the sandbox's business."""
    return bytes((VERSION, code, 0, _IPV4, 0, 0, 0, 0, 0, 0))
