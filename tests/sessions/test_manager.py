"""Sessions end to end through the Python API, with a real sandbox, both proxies and a real git host: a consumer's
turns are kept encrypted and the branch is pushed; a ZDR organization's session works and keeps nothing; delete
makes content unreadable at once and tears everything down."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ringfence.egress.proxy import EgressProxy
from ringfence.gateway.credentials import StaticToken
from ringfence.gateway.git_proxy import Gateway
from ringfence.net.addresses import AddressPolicy
from ringfence.net.resolve import CachingResolver, StaticResolver
from ringfence.sandbox import BubblewrapBackend, Exit, Limits, Output
from ringfence.sessions.manager import Caller, Environment, RepositoryHost, SessionManager
from ringfence.store import accounts, content
from ringfence.store.crypto import Secret
from ringfence.store.db import Store
from tests.egress.harness import http_upstream
from tests.gateway.git_host import GitHost, git, loopback_dialer, make_repository
from tests.sandbox.conftest import backend, sandbox_root  # noqa: F401 (fixtures)
from tests.store.helpers import files_containing

TOKEN = "ghs_SESSION_TOKEN_0987654321"
NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)


@pytest.fixture
def host(tmp_path: Path) -> Iterator[GitHost]:
    make_repository(tmp_path / "host", "acme", "widgets")
    server = GitHost(tmp_path / "host", TOKEN)
    yield server
    server.close()


async def manager_for(
    store: Store,
    backend: BubblewrapBackend,  # noqa: F811
    host: GitHost,
    tmp_path: Path,
    ceiling: Limits | None = None,
) -> SessionManager:
    egress = EgressProxy(
        AddressPolicy.parse(["127.0.0.1/32"]), CachingResolver(StaticResolver({"ok.example": ["127.0.0.1"]}))
    )
    return SessionManager(
        store,
        backend,
        tmp_path / "run",
        egress,
        Gateway(dialer=loopback_dialer()),
        RepositoryHost(host.url, lambda _repo: StaticToken("basic", Secret(TOKEN))),
        lambda: NOW,
        ceiling=ceiling,
    )


def caller(store: Store, user_id: str) -> Caller:
    """The user starting a session through a key of their own (a plain key: ZDR only if the org has it)."""
    key, _ = accounts.create_api_key(store, user_id, "session", NOW, actor="t")
    return Caller(user_id, key.id)


async def turn(manager: SessionManager, session_id: str, text: str) -> tuple[str, Exit]:
    """One prompt: the agent's whole output, and how it ended."""
    out, final = bytearray(), Exit(-1)
    async for event in manager.prompt(session_id, text):
        if isinstance(event, Output):
            out.extend(event.data)
        elif isinstance(event, Exit):
            final = event
    return out.decode(errors="replace"), final


async def one_turn(manager: SessionManager, user_id: str, repo_id: str, env: Environment) -> tuple[str, str, str]:
    live = await manager.start(caller(manager.store, user_id), repo_id, env)
    output, _ = await turn(manager, live.id, "write the notes")
    pushed = (await manager.end(live.id)).commit
    return live.id, output, pushed


def test_a_consumer_session_keeps_its_turns_and_pushes_its_branch(
    store: Store,
    backend: BubblewrapBackend,  # noqa: F811
    host: GitHost,
    tmp_path: Path,
) -> None:
    user = accounts.create_user(store, "u", NOW, actor="t", plan="pro")
    repo = accounts.connect_repository(store, user.id, f"{host.url}/acme/widgets.git", NOW, actor="t")
    web = http_upstream()
    port = web.server_address[1]
    tries = f"http://ok.example:{port}/\nhttp://evil.example/\n"
    env = Environment(network="custom", allow=(f"ok.example:{port}",), agent_env={"RINGFENCE_AGENT_TRY": tries})

    async def go() -> tuple[str, str, str, Any]:
        manager = await manager_for(store, backend, host, tmp_path)
        try:
            return (*await one_turn(manager, user.id, repo.id, env), manager)
        finally:
            await manager.close()
            await manager.egress.close()

    try:
        session_id, output, pushed, _ = asyncio.run(go())
    finally:
        web.shutdown()
        web.server_close()
    assert "edited AGENT_NOTES.md" in output and "-> 200" in output and "-> 403" in output
    branch = git(
        "--git-dir", str(host.root / "acme" / "widgets.git"), "rev-parse", f"refs/heads/ringfence/{session_id}"
    )
    assert branch.stdout.strip() == pushed
    kinds = [record.kind for record in content.read_content(store, session_id)]
    assert kinds == ["prompt", "output", "code_change"]
    assert not list((tmp_path / "run").iterdir())  # sockets and directories gone
    assert not list(backend.root.glob("sbx_*"))


def test_a_zdr_session_works_live_and_keeps_nothing(
    store: Store,
    backend: BubblewrapBackend,  # noqa: F811
    host: GitHost,
    tmp_path: Path,
    data_dir: Path,
) -> None:
    org = accounts.create_organization(store, "acme", "api", NOW, actor="t")
    member = accounts.create_user(store, "m", NOW, actor="t", org_id=org.id)
    accounts.set_org_switch(store, org.id, "zdr", True, NOW, actor=member.id)
    repo = accounts.connect_repository(store, member.id, f"{host.url}/acme/widgets.git", NOW, actor="t")

    async def go() -> tuple[str, str, str]:
        manager = await manager_for(store, backend, host, tmp_path)
        try:
            return await one_turn(manager, member.id, repo.id, Environment(network="none"))
        finally:
            await manager.close()
            await manager.egress.close()

    session_id, output, _ = asyncio.run(go())
    assert "edited AGENT_NOTES.md" in output
    assert content.count_content(store, session_id) == 0
    store.engine.dispose()
    assert files_containing(data_dir, b"write the notes") == []


def test_delete_tears_down_and_makes_content_unreadable(
    store: Store,
    backend: BubblewrapBackend,  # noqa: F811
    host: GitHost,
    tmp_path: Path,
) -> None:
    user = accounts.create_user(store, "u", NOW, actor="t", plan="pro")
    repo = accounts.connect_repository(store, user.id, f"{host.url}/acme/widgets.git", NOW, actor="t")

    async def go() -> str:
        manager = await manager_for(store, backend, host, tmp_path)
        try:
            live = await manager.start(caller(store, user.id), repo.id, Environment(network="none"))
            async for _ in manager.prompt(live.id, "something private"):
                pass
            await manager.delete(live.id, actor=user.id)
            return live.id
        finally:
            await manager.close()
            await manager.egress.close()

    session_id = asyncio.run(go())
    assert content.count_content(store, session_id) == 0
    assert not list(backend.root.glob("sbx_*"))
    refs = git("--git-dir", str(host.root / "acme" / "widgets.git"), "for-each-ref", "--format=%(refname)")
    assert f"refs/heads/ringfence/{session_id}" not in refs.stdout  # nothing was pushed


def test_twenty_concurrent_sessions_all_complete(
    store: Store,
    backend: BubblewrapBackend,  # noqa: F811
    host: GitHost,
    tmp_path: Path,
) -> None:
    users = [accounts.create_user(store, f"u{i}", NOW, actor="t", plan="pro") for i in range(20)]
    repos = [accounts.connect_repository(store, u.id, f"{host.url}/acme/widgets.git", NOW, actor="t") for u in users]

    async def go() -> list[tuple[str, str, str]]:
        manager = await manager_for(store, backend, host, tmp_path)
        try:
            return await asyncio.gather(
                *(one_turn(manager, u.id, r.id, Environment(network="none")) for u, r in zip(users, repos, strict=True))
            )
        finally:
            await manager.shutdown()

    results = asyncio.run(go())
    assert len(results) == 20 and all("done" in output for _, output, _ in results)
    heads = git("--git-dir", str(host.root / "acme" / "widgets.git"), "for-each-ref", "--format=%(refname)").stdout
    assert sum(f"refs/heads/ringfence/{sid}" in heads for sid, _, _ in results) == 20
    assert not list(backend.root.glob("sbx_*"))


@pytest.mark.parametrize(
    ("account", "eligible"),
    [("consumer-on", True), ("consumer-off", False), ("team", False), ("team-dpp", True)],
)
def test_training_eligibility_of_real_sessions_follows_the_policy(
    store: Store,
    backend: BubblewrapBackend,  # noqa: F811
    host: GitHost,
    tmp_path: Path,
    account: str,
    eligible: bool,
) -> None:
    """A consumer with training on or off; a commercial organization with and without the Development Partner
    Program: the session's turns are in a training export exactly when the policy says so."""
    from ringfence.store.export import eligible_sessions

    if account.startswith("consumer"):
        user = accounts.create_user(store, "u", NOW, actor="t", plan="pro")
        accounts.set_training(store, user.id, account == "consumer-on", NOW, actor=user.id)
    else:
        org = accounts.create_organization(store, "acme", "team", NOW, actor="t")
        user = accounts.create_user(store, "m", NOW, actor="t", org_id=org.id, org_admin=True)
        if account == "team-dpp":
            accounts.set_org_switch(store, org.id, "dpp", True, NOW, actor=user.id)
    repo = accounts.connect_repository(store, user.id, f"{host.url}/acme/widgets.git", NOW, actor="t")

    async def go() -> str:
        manager = await manager_for(store, backend, host, tmp_path)
        try:
            session_id, _, _ = await one_turn(manager, user.id, repo.id, Environment(network="none"))
            return session_id
        finally:
            await manager.shutdown()

    session_id = asyncio.run(go())
    assert content.count_content(store, session_id) == 3  # kept in every case: eligibility is a separate decision
    assert (session_id in [sid for sid, _ in eligible_sessions(store, NOW)]) == eligible
