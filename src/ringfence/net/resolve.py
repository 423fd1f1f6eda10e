"""Name resolution for the proxies: asynchronous, bounded in time, cached by TTL, and injectable.

Owns: the `Resolver` protocol (what the dialer needs: every A and AAAA answer of a name with its TTL), the
dnspython-backed resolver that reads the host's resolv.conf, and `CachingResolver`, which keeps answers no longer
than their TTL (capped) and takes the current time as a parameter. Tests inject their own resolver (a rebinding
one, a mixed-answer one) behind the same protocol; nothing here touches the machine's DNS configuration.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

from ringfence.net.addresses import IPAddress


class ResolveError(Exception):
    """A name could not be resolved; the message says why (no such name, no answer, timeout)."""


@dataclass(frozen=True, slots=True)
class Answer:
    addresses: tuple[IPAddress, ...]
    ttl: float  # seconds the answer may be kept


class Resolver(Protocol):
    async def resolve(self, name: str) -> Answer:
        """All A and AAAA answers for `name` (a normalized DNS name, never an IP literal)."""
        ...


class DnsResolver:
    """The host's resolvers (resolv.conf), through dnspython's asyncio resolver: A and AAAA asked together."""

    def __init__(self, timeout: float = 3.0) -> None:
        import dns.asyncresolver  # only when real DNS is used

        self._resolver = dns.asyncresolver.Resolver()
        self._resolver.lifetime = timeout
        self._timeout = timeout

    async def _query(self, name: str, rdtype: str) -> tuple[list[IPAddress], float]:
        import dns.exception
        import dns.resolver

        try:
            answer = await self._resolver.resolve(name, rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers):
            return [], 60.0
        except dns.exception.Timeout:
            raise ResolveError(f"resolving {name} timed out after {self._timeout:g} s") from None
        assert answer.rrset is not None
        return [ipaddress.ip_address(r.address) for r in answer], float(answer.rrset.ttl)

    async def resolve(self, name: str) -> Answer:
        (v4, ttl4), (v6, ttl6) = await asyncio.gather(self._query(name, "A"), self._query(name, "AAAA"))
        if not v4 and not v6:
            raise ResolveError(f"{name} has no A or AAAA record")
        ttls = [t for t, found in ((ttl4, v4), (ttl6, v6)) if found]
        return Answer(tuple(v4 + v6), min(ttls))


class StaticResolver:
    """A fixed table (tests, and operators who pin names): name -> addresses, with a TTL."""

    def __init__(self, table: dict[str, list[str]], ttl: float = 60.0) -> None:
        self._table = {k: tuple(ipaddress.ip_address(a) for a in v) for k, v in table.items()}
        self._ttl = ttl

    async def resolve(self, name: str) -> Answer:
        found = self._table.get(name)
        if not found:
            raise ResolveError(f"{name} has no A or AAAA record")
        return Answer(found, self._ttl)


class CachingResolver:
    """Keeps each answer for min(TTL, max_ttl) seconds, at most `size` names (least recently used go first).
    `now` is given by the caller (the event loop's clock), never read here."""

    def __init__(self, inner: Resolver, *, size: int = 4096, max_ttl: float = 300.0, timeout: float = 3.0) -> None:
        self._inner, self._size, self._max_ttl, self._timeout = inner, size, max_ttl, timeout
        self._cache: OrderedDict[str, tuple[float, Answer]] = OrderedDict()

    async def resolve(self, name: str, now: float) -> tuple[Answer, bool]:
        """The answer for `name` and whether it came from the cache."""
        hit = self._cache.get(name)
        if hit is not None and hit[0] > now:
            self._cache.move_to_end(name)
            return hit[1], True
        try:
            answer = await asyncio.wait_for(self._inner.resolve(name), self._timeout)
        except TimeoutError:
            raise ResolveError(f"resolving {name} timed out after {self._timeout:g} s") from None
        ttl = min(max(answer.ttl, 0.0), self._max_ttl)
        if ttl > 0:
            self._cache[name] = (now + ttl, answer)
            self._cache.move_to_end(name)
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return answer, False


class PinnedResolver:
    """Names pinned by the operator (`--resolve NAME=ADDR`, like curl's) first, the inner resolver for the rest."""

    def __init__(self, pins: dict[str, list[str]], inner: Resolver, ttl: float = 60.0) -> None:
        self._pins = StaticResolver(pins, ttl)
        self._names = set(pins)
        self._inner = inner

    async def resolve(self, name: str) -> Answer:
        if name in self._names:
            return await self._pins.resolve(name)
        return await self._inner.resolve(name)
