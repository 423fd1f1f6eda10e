"""B7 and G1 in a real session: the host's environment (a planted variable standing for database URLs and cloud
credentials), its paths and the repository token are nowhere in any process the session's sandbox can see."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from ringfence.sandbox import BubblewrapBackend
from ringfence.sessions.manager import Environment
from ringfence.store import accounts
from ringfence.store.db import Store
from tests.gateway.git_host import GitHost
from tests.sandbox.conftest import backend, sandbox_root  # noqa: F401 (fixtures)
from tests.sandbox.test_escapes import probe
from tests.sandbox.test_host_leaks import PLANTED_NAME, PLANTED_VALUE, assert_no_host_leaks
from tests.sessions.test_limits import _manager
from tests.sessions.test_manager import NOW, TOKEN, caller, host  # noqa: F401 (fixture)


def test_b7_a_sessions_sandbox_sees_nothing_of_the_host(
    store: Store,
    backend: BubblewrapBackend,  # noqa: F811
    host: GitHost,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PLANTED_NAME, PLANTED_VALUE)
    user = accounts.create_user(store, "u", NOW, actor="t", plan="pro")
    repo = accounts.connect_repository(store, user.id, f"{host.url}/acme/widgets.git", NOW, actor="t")

    async def go() -> Any:
        manager = await _manager(store, backend, host, tmp_path)
        try:
            live = await manager.start(caller(store, user.id), repo.id, Environment(network="trusted"))
            [scan] = await probe(live.sandbox, ("proc_scan",))
            await manager.delete(live.id, actor=user.id)
            return scan
        finally:
            await manager.shutdown()

    scan = asyncio.run(go())
    assert_no_host_leaks(scan, [str(backend.root), str(tmp_path), str(store.engine.url.database), TOKEN])
