"""The session's lifecycle as the API shows it (issue 15, item 8): after `end`, `turns` is the number of turns and
`status` says the session is stored; a start that failed leaves no active session (its record is deleted); every
egress record names its phase, also in sessions without a setup script."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from ringfence.sandbox import BubblewrapBackend
from ringfence.server import create_app
from ringfence.sessions.manager import Environment
from ringfence.store import accounts
from ringfence.store.db import Store
from tests.conftest import T0
from tests.gateway.git_host import GitHost
from tests.sandbox.conftest import backend, sandbox_root  # noqa: F401 (fixtures)
from tests.servers import serving
from tests.sessions.test_api import _sessions, sse_events
from tests.sessions.test_environments import _manager as environments_manager
from tests.sessions.test_manager import NOW, caller, host  # noqa: F401 (fixture)


def test_turns_status_failed_starts_and_phases(
    store: Store,
    backend: BubblewrapBackend,  # noqa: F811
    host: GitHost,  # noqa: F811
    tmp_path: Path,
) -> None:
    user = accounts.create_user(store, "u", T0, actor="t", plan="pro")
    _, token = accounts.create_api_key(store, user.id, "t", T0, actor="t")
    repo = accounts.connect_repository(store, user.id, f"{host.url}/acme/widgets.git", T0, actor="t")
    auth = {"Authorization": f"Bearer {token.reveal()}"}
    with serving(
        create_app(store, clock=lambda: T0, sessions=_sessions(store, backend, host, tmp_path, lambda: T0))
    ) as base:
        for name, settings in (("broken", {"setup": "exit 3"}),
                               ("shell", {"agent": "sh -c {prompt}", "network": "trusted"})):  # fmt: skip
            assert httpx.post(f"{base}/v1/environments", json={"name": name, **settings}, headers=auth).is_success
        failed = httpx.post(f"{base}/v1/sessions", json={"repository_id": repo.id, "environment": "broken"},
                            headers=auth, timeout=60)  # fmt: skip
        assert failed.status_code == 502 and "exited with 3" in failed.text
        [listed] = httpx.get(f"{base}/v1/sessions", headers=auth).json()
        assert listed["status"] == "deleted" and not listed["running"]  # no active session left behind

        started = httpx.post(f"{base}/v1/sessions", json={"repository_id": repo.id, "environment": "shell"},
                             headers=auth, timeout=60)  # fmt: skip
        assert started.status_code == 201, started.text
        sid = started.json()["id"]
        assert started.json()["status"] == "running" and started.json()["turns"] == 0
        for text in ("echo one", "curl -s -o /dev/null https://denied.example/ ; echo two"):
            with httpx.stream("POST", f"{base}/v1/sessions/{sid}/prompts", json={"text": text}, headers=auth,
                              timeout=60) as stream:  # fmt: skip
                sse_events(stream)
        assert httpx.post(f"{base}/v1/sessions/{sid}/end", headers=auth, timeout=60).status_code == 200
        shown = httpx.get(f"{base}/v1/sessions/{sid}", headers=auth).json()
        assert (shown["turns"], shown["status"], shown["running"]) == (2, "stored", False)


def test_every_egress_record_names_its_phase_without_a_setup_script(
    store: Store,
    backend: BubblewrapBackend,  # noqa: F811
    host: GitHost,  # noqa: F811
    tmp_path: Path,
) -> None:
    user = accounts.create_user(store, "u", NOW, actor="t", plan="pro")
    repo = accounts.connect_repository(store, user.id, f"{host.url}/acme/widgets.git", NOW, actor="t")
    records: list[Any] = []
    env = Environment(network="trusted", agent=("sh", "-c", "{prompt}"))

    async def go() -> None:
        manager = await environments_manager(store, backend, host, tmp_path, records)
        try:
            live = await manager.start(caller(store, user.id), repo.id, env)
            async for _ in manager.prompt(live.id, "curl -s -o /dev/null https://denied.example/; curl -s "
                                                   "-o /dev/null https://ok.example/"):  # fmt: skip
                pass
            await manager.end(live.id)
        finally:
            await manager.shutdown()

    asyncio.run(go())
    egress = [r for r in records if r.get("host") in ("denied.example", "ok.example")]
    assert len(egress) == 2 and all(r.get("phase") == "agent" for r in egress), egress
