"""Host and port parsing: the one strict reading of a CONNECT target, a URL authority, or a configured host.

Owns: splitting `host:port` and `[v6]:port`, refusing userinfo, zone ids, control bytes, percent-escapes and bad
ports; normalizing names (case, one trailing dot, IDN to punycode with IDNA 2008) and recognizing IP literals,
including the legacy numeric spellings the C resolver accepts (`2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`),
which are turned into the address they mean so that the decision is about the address, never the spelling.
Pure functions over strings.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import idna

from ringfence.net.addresses import IPAddress

_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_LEGACY_NUMERIC = re.compile(r"^(?:0x[0-9a-f]+|[0-9]+)(?:\.(?:0x[0-9a-f]+|[0-9]+)){0,3}$")
_FORBIDDEN = set("\x00\r\n\t %@/\\?#")


class HostError(ValueError):
    """A host or target that cannot be read; the message says what is wrong with it."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where a client asked to go: a normalized name (or an IP literal's canonical text), its address if it was
    a literal, and the port."""

    host: str
    port: int
    literal: IPAddress | None = None

    def __str__(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"{shown}:{self.port}"


def _port(text: str, what: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 5:
        raise HostError(f"{what}: port {text!r} is not a number")
    port = int(text)
    if not 1 <= port <= 65535:
        raise HostError(f"{what}: port {port} is outside 1-65535")
    return port


def legacy_ipv4(text: str) -> ipaddress.IPv4Address | None:
    """The address of a numeric spelling inet_aton accepts (`127.1`, `0x7f000001`, `0177.0.0.1`), else None."""
    if not _LEGACY_NUMERIC.match(text):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        return None


def normalize_name(text: str, what: str = "host") -> str:
    """A DNS name in canonical form: lower case, no trailing dot, IDN labels in punycode. Refuses what is not a
    name (control bytes, escapes, empty labels, over-long names)."""
    if not text:
        raise HostError(f"{what} is empty")
    bad = sorted({c for c in text if c in _FORBIDDEN or ord(c) < 32 or ord(c) == 127})
    if bad:
        raise HostError(f"{what} {text[:80]!r} holds a forbidden character ({', '.join(repr(c) for c in bad)})")
    name = text[:-1] if text.endswith(".") else text
    if not name or name.startswith(".") or ".." in name:
        raise HostError(f"{what} {text[:80]!r} has an empty label")
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise HostError(f"{what} {text[:80]!r} is not a valid internationalized name: {exc}") from None
    name = name.lower()
    if len(name) > 253:
        raise HostError(f"{what} is longer than 253 characters")
    for label in name.split("."):
        if not _LABEL.match(label):
            raise HostError(f"{what} {text[:80]!r} has an invalid label {label[:63]!r}")
    return name


# Names that mean this host or a cloud metadata service by definition, whatever a resolver answers (RFC 6761 for
# localhost; the metadata names of GCP and AWS).
_METADATA_NAMES = frozenset({"metadata", "metadata.google.internal", "instance-data", "instance-data.ec2.internal"})


def local_by_definition(name: str) -> str | None:
    """Why a normalized name is local by definition (refused by name, before any lookup), or None."""
    if name == "localhost" or name.endswith(".localhost"):
        return f"{name} names this host by definition (RFC 6761)"
    if name in _METADATA_NAMES:
        return f"{name} names a cloud metadata service"
    return None


def parse_host(text: str, what: str = "host") -> tuple[str, IPAddress | None]:
    """A host as written in a target (brackets for IPv6): its canonical text and, for a literal, its address."""
    if text.startswith("["):
        if not text.endswith("]"):
            raise HostError(f"{what} {text[:80]!r} has an unclosed '['")
        inner = text[1:-1]
        if "%" in inner:
            raise HostError(f"{what} {text[:80]!r} carries an IPv6 zone id")
        try:
            address = ipaddress.IPv6Address(inner)
        except ValueError:
            raise HostError(f"{what} {text[:80]!r} is not an IPv6 address") from None
        return str(address), address
    if ":" in text:
        raise HostError(f"{what} {text[:80]!r}: an IPv6 address must be in brackets")
    if text[:1].isdigit():
        try:  # the common dotted-quad literal, without the name checks below
            v4 = ipaddress.IPv4Address(text)
        except ValueError:
            pass
        else:
            return str(v4), v4
    name = normalize_name(text, what)
    try:
        v4 = ipaddress.IPv4Address(name)
    except ValueError:
        legacy = legacy_ipv4(name)
        if legacy is not None:
            return str(legacy), legacy
        if name.replace(".", "").isdigit():
            raise HostError(f"{what} {text[:80]!r} is neither a name nor an IPv4 address") from None
        return name, None
    return str(v4), v4


def parse_target(text: str, what: str = "target", default_port: int | None = None) -> Target:
    """`host:port` or `[v6]:port` (the port may be omitted only when `default_port` is given)."""
    if not text or len(text) > 300:
        raise HostError(f"{what} is empty or longer than 300 characters")
    if "@" in text:
        raise HostError(f"{what} {text[:80]!r} carries userinfo ('@'), which is never accepted")
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise HostError(f"{what} {text[:80]!r} has an unclosed '['")
        host_part, rest = text[: close + 1], text[close + 1 :]
        if rest and not rest.startswith(":"):
            raise HostError(f"{what} {text[:80]!r} has bytes after the IPv6 address")
        port_part = rest[1:] if rest else None
    else:
        host_part, sep, port_text = text.rpartition(":")
        if not sep:
            host_part, port_part = text, None
        else:
            port_part = port_text
        if ":" in host_part:
            raise HostError(f"{what} {text[:80]!r}: an IPv6 address must be in brackets")
    if port_part is None:
        if default_port is None:
            raise HostError(f"{what} {text[:80]!r} has no port")
        port = default_port
    else:
        port = _port(port_part, f"{what} {text[:80]!r}")
    host, literal = parse_host(host_part, what)
    return Target(host, port, literal)


def url_target(url: str, what: str = "URL") -> Target:
    """Where an http(s) URL points: its authority read as a target, the scheme's port when none is given."""
    parts = urlsplit(url)
    return parse_target(parts.netloc, what, default_port=443 if parts.scheme == "https" else 80)
