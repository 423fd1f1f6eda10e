"""The embedded defaults: one server process runs the sandboxes, the egress proxy and the gateway for every
session (ARCHITECTURE: "proxies inside the server process"), with both proxies' records in the store's hash
chain. `embedded_sessions` is what `ringfence serve` hands to the API app."""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Awaitable, Callable
from datetime import datetime

from ringfence.config import Settings
from ringfence.egress.audit import BatchedAudit, StoreWriter
from ringfence.egress.proxy import EgressProxy
from ringfence.gateway.git_proxy import Gateway
from ringfence.net.addresses import AddressPolicy, IPAddress
from ringfence.net.dial import Dialer
from ringfence.net.interfaces import host_addresses
from ringfence.net.resolve import CachingResolver, DnsResolver, Resolver
from ringfence.sandbox import BubblewrapBackend
from ringfence.sessions.manager import SessionManager, StoreHosts
from ringfence.store.db import Store


def upstream_dialer(
    config: Settings, *, trusted: frozenset[tuple[IPAddress, int]] = frozenset(), resolver: Resolver | None = None
) -> Dialer:
    """How the server dials on a user's behalf (the gateway's repository hosts and model providers; URLs checked
    when saved): the egress address policy with the operator's `egress_allow_ranges`, the `trusted` endpoints
    exactly (the demo's own git host), and never the server's own listener."""
    host, _, port = config.listen.rpartition(":")
    protected: set[tuple[IPAddress, int]] = set()
    with contextlib.suppress(ValueError):
        protected.add((ipaddress.ip_address(host.strip("[]")), int(port)))
    return Dialer(
        AddressPolicy.parse(config.egress_allow_ranges, host_addresses()),
        CachingResolver(resolver or DnsResolver()),
        endpoints=trusted,
        protected=frozenset(protected),
    )


def embedded_sessions(
    store: Store, config: Settings, clock: Callable[[], datetime], dialer: Dialer
) -> Callable[[], Awaitable[SessionManager]]:
    async def build() -> SessionManager:
        backend = BubblewrapBackend(config.sandbox_dir, rootfs=config.sandbox_rootfs)
        stamp = lambda: clock().isoformat()  # noqa: E731
        egress_audit = BatchedAudit(StoreWriter(store), stamp)
        gateway_audit = BatchedAudit(StoreWriter(store), stamp)
        egress_audit.start()
        gateway_audit.start()
        egress = EgressProxy(
            AddressPolicy.parse(config.egress_allow_ranges, host_addresses()),
            CachingResolver(DnsResolver()),
            egress_audit,
            clock=clock,
        )
        manager = SessionManager(
            store,
            backend,
            config.data_dir / "run",
            egress,
            Gateway(gateway_audit, clock=clock, dialer=dialer),
            StoreHosts(store),
            clock,
            ceiling=config.sandbox_limits(),
            network_modes=config.sandbox_network_modes,
        )
        manager.closers += [egress_audit.close, gateway_audit.close]
        await manager.recover()  # sessions a crashed server left behind are marked interrupted (resumable)
        return manager

    return build
