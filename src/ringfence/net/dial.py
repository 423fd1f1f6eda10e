"""The safe dialer: resolve once, judge every answer, dial only an address that was judged, say which.

Owns: turning a `Target` into a connected socket or a refusal with its reason. The address checked is the
address dialed (no second lookup by the socket layer: connect() gets the address itself), so a rebinding name
cannot slip a second answer in (SECURITY-CASES E7, E8). Times (DNS, connect) are measured for the audit record.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Collection
from dataclasses import dataclass

from ringfence.net.addresses import AddressPolicy, AddressVerdict, IPAddress
from ringfence.net.hostport import HostError, Target, local_by_definition, url_target
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
    if target.literal is None and (local := local_by_definition(target.host)) is not None:
        raise DialRefused(local, "name:local")
    if target.literal is not None:
        addresses: tuple[IPAddress, ...] = (target.literal,)
    else:
        try:
            answer, _ = await resolver.resolve(target.host, now)
        except ResolveError as exc:
            raise DialRefused(str(exc), "dns") from None
        addresses = answer.addresses
    return tuple(policy.judge(a) for a in addresses), time.perf_counter() - start


def _exactly(verdict: AddressVerdict, port: int, endpoints: Collection[tuple[IPAddress, int]]) -> AddressVerdict:
    if verdict.allowed or (verdict.address, port) not in endpoints:
        return verdict
    return AddressVerdict(True, verdict.address, verdict.kind, f"{verdict.address} port {port} allowed exactly")


def reaches_protected(
    verdict: AddressVerdict, port: int, protected: Collection[tuple[IPAddress, int]], policy: AddressPolicy
) -> bool:
    """Whether dialing the judged address at `port` would reach one of this host's `protected` listeners: the
    same address and port; or, on that port, any local address (loopback, unspecified, the host's own) when the
    listener is on the unspecified address (it answers on all of them); or the unspecified address itself (a dial
    to 0.0.0.0 or :: reaches whatever listens locally on that port)."""
    local = verdict.kind.name in ("loopback", "unspecified") or verdict.address in policy.host_addresses
    for address, guarded in protected:
        if guarded != port:
            continue
        if address == verdict.address or verdict.kind.name == "unspecified" or (address.is_unspecified and local):
            return True
    return False


def _dialable(
    verdicts: tuple[AddressVerdict, ...],
    target: Target,
    policy: AddressPolicy,
    protected: Collection[tuple[IPAddress, int]],
    endpoints: Collection[tuple[IPAddress, int]],
) -> tuple[tuple[AddressVerdict, ...], list[AddressVerdict]]:
    """The verdicts (with exactly allowed endpoints applied) and the addresses that may be dialed, best first; a
    DialRefused naming the first reason when there are none."""
    verdicts = tuple(_exactly(v, target.port, endpoints) for v in verdicts)
    safe = [v for v in verdicts if v.allowed and not reaches_protected(v, target.port, protected, policy)]
    if not safe:
        looped = [v for v in verdicts if v.allowed]
        if looped:
            raise DialRefused(f"{target} is one of ringfence's own endpoints", "loop", verdicts)
        first = verdicts[0]
        every = "" if len(verdicts) == 1 else f" (all {len(verdicts)} answers are refused)"
        raise DialRefused(f"{first.reason}{every}", f"address:{first.kind.name}", verdicts)
    return verdicts, safe


async def dial(
    target: Target,
    policy: AddressPolicy,
    resolver: CachingResolver,
    *,
    now: float,
    connect_timeout: float = 10.0,
    protected: Collection[tuple[IPAddress, int]] = (),
    endpoints: Collection[tuple[IPAddress, int]] = (),
) -> Dialed:
    """Connect to a safe address of `target`. `protected` endpoints (the proxy itself, the gateway, the API
    server) are refused even inside an allowed range: a proxy must not loop into its own host's services.
    `endpoints` are (address, port) pairs allowed exactly, whatever their class (the demo's own git host)."""
    verdicts, dns_seconds = await judge_target(target, policy, resolver, now)
    verdicts, safe = _dialable(verdicts, target, policy, protected, endpoints)
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


def endpoints_of(url: str) -> frozenset[tuple[IPAddress, int]]:
    """The (address, port) pairs an operator's own URL names now (a blocking lookup, for start-up): what a
    component told to trust exactly that upstream may dial, and nothing else of its class."""
    target = url_target(url)
    found = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    return frozenset((ipaddress.ip_address(str(info[4][0]).split("%")[0]), target.port) for info in found)


async def check_url(dialer: Dialer, url: str) -> str | None:
    """Why `url`'s host may never be dialed (None: it may be, or it cannot be told now because its name does not
    resolve here; the dial checks again, on the address it dials). For refusing a URL when it is saved."""
    try:
        await dialer.check(url_target(url))
    except HostError as exc:
        return str(exc)
    except DialRefused as exc:
        return None if exc.rule in ("dns", "upstream") else exc.reason
    return None


@dataclass(frozen=True)
class Dialer:
    """Everything a component that dials on a user's behalf needs, fixed by the operator: the address policy
    (public addresses plus `egress_allow_ranges`), the resolver, endpoints allowed exactly, and its own host's
    endpoints that are never dialed. The credential gateway dials every upstream (repository hosts, model
    providers) through one of these (SECURITY-CASES T4), so a repository URL cannot make the server reach its
    own network."""

    policy: AddressPolicy
    resolver: CachingResolver
    endpoints: frozenset[tuple[IPAddress, int]] = frozenset()
    protected: frozenset[tuple[IPAddress, int]] = frozenset()

    async def connect(self, target: Target, *, connect_timeout: float = 10.0) -> Dialed:
        return await dial(
            target,
            self.policy,
            self.resolver,
            now=time.monotonic(),
            connect_timeout=connect_timeout,
            protected=self.protected,
            endpoints=self.endpoints,
        )

    async def check(self, target: Target) -> None:
        """Refuses (DialRefused, with the reason) a target none of whose addresses may be dialed; connects nothing.
        What is checked when a URL is saved; the dial itself checks again, on the address it dials."""
        verdicts, _ = await judge_target(target, self.policy, self.resolver, time.monotonic())
        _dialable(verdicts, target, self.policy, self.protected, self.endpoints)
