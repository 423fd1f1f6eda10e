"""A whole session on gVisor (issue 16): the clone through the gateway and the agent's egress through the relay
inside the sandbox, the built-in agent, Claude Code and Codex running, capture, push at end, resume; nothing of
runsc left after the session."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ringfence.egress.proxy import EgressProxy
from ringfence.gateway.credentials import StaticToken
from ringfence.gateway.git_proxy import Gateway
from ringfence.net.addresses import AddressPolicy
from ringfence.net.resolve import CachingResolver, StaticResolver
from ringfence.sandbox.gvisor import GVisorBackend
from ringfence.sessions.manager import Environment, RepositoryHost, SessionManager, StoreModels
from ringfence.store import accounts, content, providers
from ringfence.store.crypto import Secret
from ringfence.store.db import Store
from ringfence.store.models import Session as SessionRow
from ringfence.testing.providers import StandInProvider
from tests.agents.installed import installed_agents
from tests.gateway.git_host import GitHost, git, loopback_dialer
from tests.sessions.test_manager import NOW, TOKEN, caller, host, turn  # noqa: F401 (fixture)
from tests.sessions.test_real_agents import said, typed_turn


async def live_file(manager: SessionManager, session_id: str, path: str) -> bytes:
    return (await manager.live[session_id].sandbox.run(["cat", f"repo/{path}"])).stdout


@pytest.fixture
def gvisor() -> Iterator[GVisorBackend]:
    base = Path(tempfile.mkdtemp(prefix="rf-gvisor-"))
    base.chmod(0o711)
    yield GVisorBackend(base / "sandboxes")


def test_a_session_on_gvisor(store: Store, gvisor: GVisorBackend, host: GitHost, tmp_path: Path) -> None:  # noqa: F811
    user = accounts.create_user(store, "u", NOW, actor="t", plan="pro")
    repo = accounts.connect_repository(store, user.id, f"{host.url}/acme/widgets.git", NOW, actor="t")
    agents = installed_agents(tmp_path / "install-check").tools

    async def go() -> tuple[str, str, str, str, str]:
        with StandInProvider("anthropic") as stand_in, StandInProvider("openai") as openai:
            providers.set_provider(store, user.id, "anthropic", None, stand_in.url, Secret("sk-gv"), NOW, actor="t")
            providers.set_provider(store, user.id, "openai", None, openai.url, Secret("sk-gv-o"), NOW, actor="t")
            manager = SessionManager(
                store, gvisor, tmp_path / "run",
                EgressProxy(AddressPolicy.parse([]), CachingResolver(StaticResolver({}))),
                Gateway(dialer=loopback_dialer()),
                RepositoryHost(host.url, lambda _r: StaticToken("basic", Secret(TOKEN))), lambda: NOW,
                models=StoreModels(store), agents=agents,
            )  # fmt: skip
            try:
                live = await manager.start(caller(store, user.id), repo.id, Environment(network="none"))
                output, _ = await turn(manager, live.id, "write the notes")
                pushed = (await manager.end(live.id)).commit
                claude = Environment(network="none", agent="claude-code")
                await manager.resume(live.id, user.id, claude)
                events, _ = await typed_turn(manager, live.id, "run: echo from-gvisor > gv.txt")
                final = (await manager.end(live.id)).commit
                await manager.resume(live.id, user.id, Environment(network="none", agent="codex"))
                codex, _ = await typed_turn(manager, live.id, "run: echo codex-on-gvisor > cx.txt")
                kept = (await live_file(manager, live.id, "cx.txt")) + said(codex).encode()
                await manager.end(live.id)
                return live.id, output, pushed, said(events) + final, kept.decode()
            finally:
                await manager.shutdown()

    session_id, output, pushed, claude, codex = asyncio.run(go())
    assert codex.startswith("codex-on-gvisor\n") and "The command ran" in codex
    assert "edited AGENT_NOTES.md" in output and "done" in output
    bare = str(host.root / "acme" / "widgets.git")
    history = git("--git-dir", bare, "rev-list", f"refs/heads/ringfence/{session_id}").stdout.split()
    assert claude[-40:] in history  # Claude Code's push, then Codex's on top
    assert git("--git-dir", bare, "show", f"refs/heads/ringfence/{session_id}:cx.txt").stdout == "codex-on-gvisor\n"
    assert git("--git-dir", bare, "show", f"refs/heads/ringfence/{session_id}:gv.txt").stdout == "from-gvisor\n"
    assert "The command ran" in claude
    assert any(r.kind == "code_change" for r in content.read_content(store, session_id))
    assert pushed
    assert not list(gvisor.root.glob("sbx_*"))  # every sandbox destroyed
    with store.read() as db:
        row = db.get(SessionRow, session_id)
        assert row is not None and row.backend == "gvisor"  # the session says which backend ran it
