"""What the session benchmarks share: a demo repository on a real git host (smart HTTP on loopback), a member with
that repository connected and an API key, and a session manager over a given backend reaching that host."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.gateway.git_host import loopback_dialer

from ringfence.egress.proxy import EgressProxy
from ringfence.gateway.credentials import StaticToken
from ringfence.gateway.git_proxy import Gateway
from ringfence.githost import GitHost, make_repository
from ringfence.net.addresses import AddressPolicy
from ringfence.net.resolve import CachingResolver, StaticResolver
from ringfence.sessions.manager import Caller, RepositoryHost, SessionManager
from ringfence.store import accounts
from ringfence.store.crypto import Secret
from ringfence.store.db import Store


@dataclass
class SessionWorld:
    host: GitHost
    token: str
    caller: Caller
    repository_id: str

    def manager(self, store: Store, backend: Any, run: Path, **options: Any) -> SessionManager:
        return SessionManager(
            store,
            backend,
            run,
            EgressProxy(AddressPolicy.parse([]), CachingResolver(StaticResolver({}))),
            Gateway(dialer=loopback_dialer()),
            RepositoryHost(self.host.url, lambda _r: StaticToken("basic", Secret(self.token))),
            lambda: datetime.now(UTC),
            **options,
        )


def session_world(store: Store, base: Path, token: str) -> SessionWorld:
    make_repository(base / "host", "demo", "example", commits=20)
    host = GitHost(base / "host", token)
    now = datetime.now(UTC)
    user = accounts.create_user(store, "bench", now, actor="bench", plan="pro")
    repo = accounts.connect_repository(store, user.id, f"{host.url}/demo/example.git", now, actor="bench")
    key, _ = accounts.create_api_key(store, user.id, "bench", now, actor="bench")
    return SessionWorld(host, token, Caller(user.id, key.id), repo.id)
