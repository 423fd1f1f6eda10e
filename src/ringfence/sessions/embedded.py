"""The embedded defaults: one server process runs the sandboxes, the egress proxy and the gateway for every
session (ARCHITECTURE: "proxies inside the server process"), with both proxies' records in the store's hash
chain. `embedded_sessions` is what `ringfence serve` hands to the API app."""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Awaitable, Callable
from datetime import datetime

from ringfence.agents.install import AgentInstalls
from ringfence.config import ConfigError, Settings
from ringfence.egress.audit import BatchedAudit, StoreWriter
from ringfence.egress.proxy import EgressProxy
from ringfence.gateway.git_proxy import Gateway
from ringfence.net.addresses import AddressPolicy, IPAddress
from ringfence.net.dial import Dialer
from ringfence.net.interfaces import host_addresses
from ringfence.net.resolve import CachingResolver, DnsResolver, Resolver
from ringfence.sessions.manager import SessionManager, StoreHosts
from ringfence.sessions.upstreams import DefaultProvider, StoreModels
from ringfence.store import providers
from ringfence.store.db import Store
from ringfence.store.errors import Invalid


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


def default_providers(config: Settings) -> dict[str, DefaultProvider]:
    """The operator's `[providers.NAME]`, checked as an account's are (a bad one stops the server, naming it)."""
    found = {}
    for name, setting in config.providers.items():
        try:
            kind = providers.check_provider(name, setting.kind, setting.base_url)
        except Invalid as exc:
            raise ConfigError(f"providers.{name}: {exc}") from None
        if not setting.api_key_file.is_file():
            raise ConfigError(f"providers.{name}: api_key_file {setting.api_key_file} is not a file")
        found[name] = DefaultProvider(kind, setting.base_url, setting.api_key_file)
    return found


def embedded_sessions(
    store: Store, config: Settings, clock: Callable[[], datetime], dialer: Dialer
) -> Callable[[], Awaitable[SessionManager]]:
    async def build() -> SessionManager:
        backend = config.sandbox_backend_for()
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
            StoreHosts(store, dialer),
            clock,
            ceiling=config.sandbox_limits(),
            network_modes=config.sandbox_network_modes,
            models=StoreModels(store, default_providers(config)),
            agents=AgentInstalls(config.data_dir).tools,
        )
        manager.closers += [egress_audit.close, gateway_audit.close]
        await manager.recover()  # sessions a crashed server left behind are marked interrupted (resumable)
        return manager

    return build
