"""T1 and B3 for sessions: the operator's sandbox settings are ceilings for every session. An environment may only
lower them: above a ceiling it is refused when saved (API and console, naming the limit and the ceiling) and when
a session starts (a ceiling lowered since); `null` asks for the ceiling, never for no limit. A session gets exactly
what its environment asked for, measured from inside: fork until refused, allocate until killed, fill the
workspace, run past the timeout."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest

from ringfence.egress.rules import RuleError
from ringfence.sandbox import BubblewrapBackend, Exit, Limits
from ringfence.sandbox.spec import LimitRequest
from ringfence.server import create_app
from ringfence.sessions.manager import Environment, SessionManager
from ringfence.store import accounts
from ringfence.store.db import Store
from ringfence.store.errors import Invalid
from tests.conftest import T0
from tests.gateway.git_host import GitHost
from tests.sandbox.conftest import backend, sandbox_root  # noqa: F401 (fixtures)
from tests.servers import serving
from tests.sessions.test_manager import NOW, caller, host, manager_for, turn  # noqa: F401 (fixture)

MiB = 2**20
CEILING = Limits(memory_bytes=256 * MiB, pids=128, timeout_seconds=30, workspace_bytes=256 * MiB, cpu_weight=100)

ABOVE = [
    ("memory", "512M", "256M"),
    ("pids", 129, "128"),
    ("timeout_seconds", 31, "30 s"),
    ("workspace", "1G", "256M"),
    ("cpu_weight", 10_000, "100"),
]
NULLS = {"memory": None, "pids": None, "timeout_seconds": None, "workspace": None, "cpu_weight": None}


@pytest.mark.parametrize(("field", "asked", "ceiling"), ABOVE)
def test_an_environment_above_a_ceiling_is_refused_through_the_api_and_the_console(
    store: Store, field: str, asked: object, ceiling: str
) -> None:
    user = accounts.create_user(store, "u", T0, actor="t", plan="pro")
    _, token = accounts.create_api_key(store, user.id, "t", T0, actor="t")
    with serving(create_app(store, clock=lambda: T0, ceiling=CEILING)) as base:
        auth = {"Authorization": f"Bearer {token.reveal()}"}
        refused = httpx.post(f"{base}/v1/environments", json={"name": "big", "limits": {field: asked}}, headers=auth)
        assert refused.status_code == 422, refused.text
        message = refused.json()["error"]["message"]
        assert f"limits.{field}" in message and f"ceiling of {ceiling}" in message
        assert httpx.get(f"{base}/v1/environments", headers=auth).json() == []  # nothing stored
        # every limit null: each is the ceiling, never "no limit"
        made = httpx.post(f"{base}/v1/environments", json={"name": "nulls", "limits": NULLS}, headers=auth)
        assert made.status_code == 201, made.text
        replaced = httpx.put(f"{base}/v1/environments/nulls", json={"limits": {field: asked}}, headers=auth)
        assert replaced.status_code == 422 and f"limits.{field}" in replaced.text
        assert httpx.get(f"{base}/v1/environments/nulls", headers=auth).json()["settings"]["limits"] == NULLS
        if field in ("memory", "workspace"):  # the console's form has these two
            with httpx.Client(base_url=base, follow_redirects=True) as client:
                client.post("/ui/login", data={"token": token.reveal()})
                csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', client.get("/ui/environments").text)
                assert csrf
                page = client.post("/ui/environments", data={"name": "form", field: str(asked), "csrf": csrf[1]})
                assert f"limits.{field}" in page.text and "ceiling" in page.text
            assert [e["name"] for e in httpx.get(f"{base}/v1/environments", headers=auth).json()] == ["nulls"]


async def _manager(store: Store, backend: BubblewrapBackend, host: GitHost, tmp_path: Path) -> SessionManager:  # noqa: F811
    return await manager_for(store, backend, host, tmp_path, ceiling=CEILING)


@pytest.mark.parametrize("field", ["network", "setup_network"])
def test_a_network_mode_the_operator_does_not_allow_is_refused(store: Store, field: str) -> None:
    user = accounts.create_user(store, "u", T0, actor="t", plan="pro")
    _, token = accounts.create_api_key(store, user.id, "t", T0, actor="t")
    app = create_app(store, clock=lambda: T0, network_modes=["none", "trusted"])
    with serving(app) as base:
        auth = {"Authorization": f"Bearer {token.reveal()}"}
        refused = httpx.post(f"{base}/v1/environments", json={"name": "open", field: "full"}, headers=auth)
        assert refused.status_code == 422 and f"{field}: mode 'full' is not allowed" in refused.text
        allowed = httpx.post(f"{base}/v1/environments", json={"name": "ok", field: "trusted"}, headers=auth)
        assert allowed.status_code == 201
        with httpx.Client(base_url=base, follow_redirects=True) as client:
            client.post("/ui/login", data={"token": token.reveal()})
            csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', client.get("/ui/environments").text)
            assert csrf
            page = client.post("/ui/environments", data={"name": "form", field: "full", "csrf": csrf[1]})
            assert "is not allowed on this server" in page.text
        assert [e["name"] for e in httpx.get(f"{base}/v1/environments", headers=auth).json()] == ["ok"]


def test_a_session_above_a_lowered_ceiling_is_refused_at_start(
    store: Store,
    backend: BubblewrapBackend,  # noqa: F811
    host: GitHost,  # noqa: F811
    tmp_path: Path,
) -> None:
    user = accounts.create_user(store, "u", NOW, actor="t", plan="pro")
    repo = accounts.connect_repository(store, user.id, f"{host.url}/acme/widgets.git", NOW, actor="t")
    env = Environment(network="none", limits=LimitRequest(pids=500))

    async def go() -> None:
        manager = await _manager(store, backend, host, tmp_path)
        manager.network_modes = frozenset({"none", "trusted"})
        try:
            with pytest.raises(Invalid, match=r"limits\.pids: 500 is above this server's ceiling of 128"):
                await manager.start(caller(store, user.id), repo.id, env)
            with pytest.raises(RuleError, match=r"network: mode 'full' is not allowed"):
                await manager.start(caller(store, user.id), repo.id, Environment(network="full"))
        finally:
            await manager.shutdown()

    asyncio.run(go())
    assert not list(backend.root.glob("sbx_*"))


PIDS = (
    "import os, time\n"
    "n = 0\n"
    "try:\n"
    "    while n < 2000:\n"
    "        if os.fork() == 0:\n"
    "            os.close(1); os.close(2); time.sleep(3); os._exit(0)\n"
    "        n += 1\n"
    "except OSError:\n"
    "    pass\n"
    "print('forked', n, flush=True)\n"
)
MEMORY = (
    "import sys\n"
    "held = []\n"
    "for step in range(1, 200):\n"
    "    held.append(bytearray(4 * 2**20))\n"
    "    print('held', step * 4, flush=True)\n"
)


@pytest.mark.parametrize(
    ("asked", "expected"),
    [
        (LimitRequest(), CEILING),  # nothing asked: exactly the operator's ceiling
        (
            LimitRequest(memory_bytes=64 * MiB, pids=32, timeout_seconds=2, workspace_bytes=64 * MiB),
            Limits(memory_bytes=64 * MiB, pids=32, timeout_seconds=2, workspace_bytes=64 * MiB),
        ),
    ],
    ids=["the-ceiling", "lower"],
)
def test_a_session_gets_exactly_its_limits_measured_from_inside(
    store: Store,
    backend: BubblewrapBackend,  # noqa: F811
    host: GitHost,  # noqa: F811
    tmp_path: Path,
    asked: LimitRequest,
    expected: Limits,
) -> None:
    assert expected.memory_bytes and expected.pids and expected.workspace_bytes and expected.timeout_seconds
    user = accounts.create_user(store, "u", NOW, actor="t", plan="pro")
    repo = accounts.connect_repository(store, user.id, f"{host.url}/acme/widgets.git", NOW, actor="t")
    env = Environment(network="none", agent=("sh", "-c", "{prompt}"), limits=asked)

    async def go() -> list[tuple[str, Exit]]:
        manager = await _manager(store, backend, host, tmp_path)
        try:
            live = await manager.start(caller(store, user.id), repo.id, env)
            results = [
                await turn(manager, live.id, f'python3 -c "{PIDS}"'),
                await turn(manager, live.id, f'python3 -c "{MEMORY}"'),
                await turn(
                    manager,
                    live.id,
                    "dd if=/dev/zero of=/workspace/fill bs=1M count=600 2>&1; "
                    "du -k /workspace/fill; rm -f /workspace/fill",
                ),
                await turn(manager, live.id, "sleep 60; echo survived"),
            ]
            await manager.delete(live.id, actor=user.id)
            return results
        finally:
            await manager.shutdown()

    pids, memory, disk, slow = asyncio.run(go())
    forked = int(re.findall(r"forked (\d+)", pids[0])[-1])
    assert expected.pids - 8 <= forked < expected.pids, pids  # the shell, python and bwrap's init count too
    held = int(re.findall(r"held (\d+)", memory[0])[-1]) * MiB
    assert memory[1].code != 0 and expected.memory_bytes / 2 < held < expected.memory_bytes, memory
    written = int(re.findall(r"^(\d+)\s+/workspace/fill", disk[0], re.M)[-1]) * 1024
    assert "No space left on device" in disk[0] and written < expected.workspace_bytes, disk
    assert slow[1].timed_out and "survived" not in slow[0]
