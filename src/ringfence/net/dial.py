"""The safe dialer: resolve once, judge every answer, dial only an address that was judged, say which.

Owns: turning a `Target` into a connected socket or a refusal with its reason. The address checked is the
address dialed (no second lookup by the socket layer: connect() gets the address itself), so a rebinding name
cannot slip a second answer in (SECURITY-CASES E7, E8). Times (DNS, connect) are measured for the audit record.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Collection
from dataclasses import dataclass

from ringfence.net.addresses import AddressPolicy, AddressVerdict, IPAddress
from ringfence.net.hostport import Target
from ringfence.net.resolve import CachingResolver, ResolveError


class DialRefused(Exception):
    """No address may be dialed, or none answered; `reason` says which, `rule` names the check."""

    def __init__(self, reason: str, rule: str, verdicts: tuple[AddressVerdict, ...] = ()) -> None:
        super().__init__(reason)
        self.reason, self.rule, self.verdicts = reason, rule, verdicts


@dataclass(frozen=True, slots=True)
class Dialed:
    sock: socket.socket
    address: IPAddress
    verdicts: tuple[AddressVerdict, ...]
    dns_seconds: float
    connect_seconds: float


async def judge_target(
    target: Target, policy: AddressPolicy, resolver: CachingResolver, now: float
) -> tuple[tuple[AddressVerdict, ...], float]:
    """Every address the target means, judged; and how long resolving took."""
    start = time.perf_counter()
    if target.literal is not None:
        addresses: tuple[IPAddress, ...] = (target.literal,)
    else:
        try:
            answer, _ = await resolver.resolve(target.host, now)
        except ResolveError as exc:
            raise DialRefused(str(exc), "dns") from None
        addresses = answer.addresses
    return tuple(policy.judge(a) for a in addresses), time.perf_counter() - start


async def dial(
    target: Target,
    policy: AddressPolicy,
    resolver: CachingResolver,
    *,
    now: float,
    connect_timeout: float = 10.0,
    protected: Collection[tuple[IPAddress, int]] = (),
) -> Dialed:
    """Connect to a safe address of `target`. `protected` endpoints (the proxy itself, the gateway, the API
    server) are refused even inside an allowed range: a proxy must not loop into its own host's services."""
    verdicts, dns_seconds = await judge_target(target, policy, resolver, now)
    safe = [v for v in verdicts if v.allowed and (v.address, target.port) not in protected]
    if not safe:
        looped = [v for v in verdicts if v.allowed]
        if looped:
            raise DialRefused(f"{target} is one of ringfence's own endpoints", "loop", verdicts)
        first = verdicts[0]
        every = "" if len(verdicts) == 1 else f" (all {len(verdicts)} answers are refused)"
        raise DialRefused(f"{first.reason}{every}", f"address:{first.kind.name}", verdicts)
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    failures = []
    deadline = loop.time() + connect_timeout
    for verdict in safe:
        family = socket.AF_INET6 if verdict.address.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            remaining = max(deadline - loop.time(), 0.001)
            async with asyncio.timeout(remaining):
                host = target.host if target.literal is not None else str(verdict.address)
                await loop.sock_connect(sock, (host, target.port))
        except (OSError, TimeoutError) as exc:
            sock.close()
            failures.append(f"{verdict.address}: {'timed out' if isinstance(exc, TimeoutError) else exc.strerror}")
            if loop.time() >= deadline:
                break
            continue
        except BaseException:
            sock.close()
            raise
        return Dialed(sock, verdict.address, verdicts, dns_seconds, time.perf_counter() - start)
    raise DialRefused(f"cannot connect to {target}: {'; '.join(failures)}", "upstream", verdicts)
