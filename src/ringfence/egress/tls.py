"""Reading the server name out of a TLS ClientHello, without decrypting or terminating anything.

Owns: `read_client_hello(data)`, a sans-I/O parser over the first bytes of a tunnel: it says "need more bytes",
"not TLS", or gives the SNI host name (or None when the hello carries none). Handles a ClientHello split across
several TLS records. Written by hand because the maintained TLS libraries parse a ClientHello only as part of a
handshake they terminate, which a proxy that must not intercept cannot do.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_HELLO = 16 * 1024 + 5  # a ClientHello beyond this is refused, never buffered further
_HANDSHAKE = 22
_CLIENT_HELLO = 1
_SERVER_NAME = 0


@dataclass(frozen=True, slots=True)
class Hello:
    sni: str | None  # the host_name entry, as sent (ASCII), or None when there is no server_name extension


class NotTls(ValueError):
    """The bytes are not a TLS ClientHello; the message says what was wrong."""


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise NotTls("ClientHello is truncated inside its own length")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def number(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def vector(self, length_bytes: int) -> bytes:
        return self.take(self.number(length_bytes))


def _handshake_bytes(data: bytes) -> bytes | None:
    """The handshake message bytes gathered from consecutive records, or None if more records are needed."""
    body, pos = b"", 0
    while True:
        if len(data) < pos + 5:
            return None
        if data[pos] != _HANDSHAKE:
            raise NotTls(f"record type {data[pos]} is not a handshake")
        if data[pos + 1] != 3:
            raise NotTls("record version is not TLS")
        length = int.from_bytes(data[pos + 3 : pos + 5], "big")
        if length == 0 or length > 16384:
            raise NotTls(f"record length {length} is out of range")
        if len(data) < pos + 5 + length:
            return None
        body += data[pos + 5 : pos + 5 + length]
        pos += 5 + length
        if len(body) >= 4:
            if body[0] != _CLIENT_HELLO:
                raise NotTls(f"handshake type {body[0]} is not ClientHello")
            need = 4 + int.from_bytes(body[1:4], "big")
            if need > MAX_HELLO:
                raise NotTls("ClientHello is too large")
            if len(body) >= need:
                return body[:need]


def read_client_hello(data: bytes) -> Hello | None:
    """The hello in `data`, or None when more bytes are needed. Raises NotTls for anything else."""
    if len(data) > MAX_HELLO * 2:
        raise NotTls("no complete ClientHello in the first 32 KiB")
    message = _handshake_bytes(data)
    if message is None:
        return None
    reader = _Reader(message[4:])
    reader.take(2)  # legacy_version
    reader.take(32)  # random
    reader.vector(1)  # session id
    if len(reader.vector(2)) % 2:
        raise NotTls("cipher suite list has an odd length")
    reader.vector(1)  # compression methods
    if reader.pos == len(reader.data):
        return Hello(None)  # no extensions at all
    extensions = _Reader(reader.vector(2))
    sni: str | None = None
    seen: set[int] = set()
    while extensions.pos < len(extensions.data):
        kind = extensions.number(2)
        value = extensions.vector(2)
        if kind in seen:
            raise NotTls(f"extension {kind} appears twice")
        seen.add(kind)
        if kind == _SERVER_NAME:
            names = _Reader(_Reader(value).vector(2))
            while names.pos < len(names.data):
                name_type = names.number(1)
                name = names.vector(2)
                if name_type == 0:
                    if sni is not None:
                        raise NotTls("two host names in server_name")
                    try:
                        sni = name.decode("ascii")
                    except UnicodeDecodeError:
                        raise NotTls("server name is not ASCII") from None
    return Hello(sni)
