"""git's pkt-line framing (gitprotocol-common(5)), read incrementally from bytes as they arrive.

Owns: `PktLineReader`, a sans-I/O decoder: feed it bytes, take packets out. A packet is its payload (bytes) or
one of the special packets (flush `0000`, and in protocol v2 only, delim `0001` and response-end `0002`). Every
malformed length is refused by name (non-hex digits, 0003 and below where not special, past 65520), and what has
been buffered is bounded by the caller's limit.
"""

from __future__ import annotations

from enum import Enum

MAX_PKT = 65520  # LARGE_PACKET_MAX: the length field counts its own 4 bytes


class Special(Enum):
    FLUSH = "0000"
    DELIM = "0001"
    RESPONSE_END = "0002"


Packet = bytes | Special


class PktLineError(ValueError):
    """Malformed pkt-line framing; the message says what was wrong and where."""


def encode(payload: bytes) -> bytes:
    if len(payload) + 4 > MAX_PKT:
        raise PktLineError(f"payload of {len(payload)} bytes does not fit one pkt-line")
    return f"{len(payload) + 4:04x}".encode() + payload


FLUSH = b"0000"


class PktLineReader:
    """Feed bytes with `feed`, then call `next()` until it answers None (more bytes needed)."""

    def __init__(self, *, v2: bool = False) -> None:
        self._buffer = bytearray()
        self._v2 = v2
        self.consumed = 0  # bytes taken out as packets so far

    def feed(self, data: bytes) -> None:
        self._buffer += data

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def rest(self) -> bytes:
        """Whatever follows the last packet taken (for a push: the start of the pack)."""
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    def next(self) -> Packet | None:
        if len(self._buffer) < 4:
            return None
        head = bytes(self._buffer[:4])
        try:
            text = head.decode("ascii")
            if not all(c in "0123456789abcdefABCDEF" for c in text):
                raise ValueError
            length = int(text, 16)
        except (UnicodeDecodeError, ValueError):
            raise PktLineError(f"pkt-line length {head!r} at byte {self.consumed} is not four hex digits") from None
        if length < 4:
            if length == 0:
                special: Packet = Special.FLUSH
            elif self._v2 and length in (1, 2):
                special = Special.DELIM if length == 1 else Special.RESPONSE_END
            else:
                raise PktLineError(f"pkt-line length {text} at byte {self.consumed} is not allowed here")
            del self._buffer[:4]
            self.consumed += 4
            return special
        if length > MAX_PKT:
            raise PktLineError(f"pkt-line length {length} at byte {self.consumed} is over {MAX_PKT}")
        if len(self._buffer) < length:
            return None
        payload = bytes(self._buffer[4:length])
        del self._buffer[:length]
        self.consumed += length
        return payload
