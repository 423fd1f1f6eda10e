"""The host's own interface addresses (read once at proxy start): a proxy must never dial the machine it runs on
through one of its own non-loopback addresses."""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import socket
import struct

from ringfence.net.addresses import IPAddress

_SIOCGIFADDR = 0x8915


def host_addresses() -> frozenset[IPAddress]:
    found: set[IPAddress] = set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in socket.if_nameindex():
            with contextlib.suppress(OSError):
                request = struct.pack("256s", name.encode()[:15])
                answer = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, request)
                found.add(ipaddress.IPv4Address(answer[20:24]))
    with contextlib.suppress(OSError), open("/proc/net/if_inet6") as handle:
        for line in handle:
            raw = line.split()[0]
            found.add(ipaddress.IPv6Address(int(raw, 16)))
    return frozenset(found)
