"""The real Claude Code and Codex CLIs in real sessions (issue 15): installed by `ringfence agent install`, run by
their presets in a real sandbox, talking to the project's stand-in providers through the gateway, with real git.

For each agent: a tool call runs in the sandbox and its change is kept and pushed (uncommitted included); two
turns continue one conversation, and so does a turn after `end` and `resume` (the provider sees the earlier
turns); every provider request carries the account's key, never the placeholder; the key is nowhere in the
sandbox, the store's files or the kept content; with telemetry off, no connection to a provider's own host or a
telemetry host is attempted; what is kept is the transcript and typed events, never raw JSON lines. Under ZDR
nothing is kept, agent state included; an unconfigured provider gives the agent an error naming the fix.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from ringfence.agents.events import AgentError, AgentEvent, Text, ToolCall, from_dict
from ringfence.egress.audit import BatchedAudit
from ringfence.egress.proxy import EgressProxy
from ringfence.gateway.credentials import StaticToken
from ringfence.gateway.git_proxy import Gateway
from ringfence.net.addresses import AddressPolicy
from ringfence.net.resolve import CachingResolver, StaticResolver
from ringfence.sandbox import BubblewrapBackend, Exit
from ringfence.server import create_app
from ringfence.sessions.manager import Environment, RepositoryHost, SessionManager, StoreModels
from ringfence.store import accounts, content, providers
from ringfence.store.crypto import Secret
from ringfence.store.db import Store
from ringfence.testing.providers import StandInProvider
from tests.agents.installed import installed_agents
from tests.gateway.git_host import GitHost, git, loopback_dialer
from tests.sandbox.conftest import backend, sandbox_root  # noqa: F401 (fixtures)
from tests.sandbox.test_escapes import probe
from tests.servers import serving
from tests.sessions.test_api import sse_events
from tests.sessions.test_manager import NOW, TOKEN, caller, host  # noqa: F401 (fixture)
from tests.store.helpers import files_containing


@dataclass(frozen=True)
class Agent:
    preset: str
    provider: str  # the provider kind the preset calls
    key: str


AGENTS = [
    Agent("claude-code", "anthropic", "sk-ant-REAL-AGENT-KEY-5511"),
    Agent("codex", "openai", "sk-openai-REAL-AGENT-KEY-6622"),
]


@pytest.fixture(scope="module")
def agents(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("agent-install")
    root.chmod(0o711)
    return installed_agents(root / "sandboxes").tools


@pytest.fixture(params=AGENTS, ids=[a.preset for a in AGENTS])
def agent(request: pytest.FixtureRequest) -> Agent:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def stand_in(agent: Agent) -> Iterator[StandInProvider]:
    with StandInProvider(agent.provider) as server:
        yield server


class Records:
    def __init__(self) -> None:
        self.egress: list[dict[str, Any]] = []


def _manager(
    store: Store,
    backend: BubblewrapBackend,  # noqa: F811
    host: GitHost,  # noqa: F811
    tmp_path: Path,
    agents: Any,
    records: Records,
) -> SessionManager:
    audit = BatchedAudit(records.egress.extend, lambda: datetime.now(UTC).isoformat(), interval=0.01)
    audit.start()
    egress = EgressProxy(AddressPolicy.parse([]), CachingResolver(StaticResolver({})), audit)
    manager = SessionManager(
        store, backend, tmp_path / "run", egress, Gateway(dialer=loopback_dialer()),
        RepositoryHost(host.url, lambda _r: StaticToken("basic", Secret(TOKEN))), lambda: NOW,
        models=StoreModels(store), agents=agents,
    )  # fmt: skip
    manager.closers.append(audit.close)
    return manager


async def typed_turn(manager: SessionManager, session_id: str, text: str) -> tuple[list[AgentEvent], Exit]:
    events: list[AgentEvent] = []
    final = Exit(-1)
    async for event in manager.prompt(session_id, text):
        if isinstance(event, Exit):
            final = event
        elif not hasattr(event, "stream"):
            events.append(event)  # type: ignore[arg-type]
    return events, final


def said(events: list[AgentEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, Text))


def test_a_real_agent_works_continues_and_keeps_nothing_secret(
    store: Store,
    backend: BubblewrapBackend,  # noqa: F811
    host: GitHost,  # noqa: F811
    tmp_path: Path,
    agents: Any,
    agent: Agent,
    stand_in: StandInProvider,
) -> None:
    member, repo = _member(store, host, agent, stand_in, plan="team")
    env = Environment(network="trusted", agent=agent.preset)
    records = Records()

    async def go() -> dict[str, Any]:
        manager = _manager(store, backend, host, tmp_path, agents, records)
        seen: dict[str, Any] = {}
        try:
            live = await manager.start(caller(store, member.id), repo.id, env)
            seen["first"] = await typed_turn(manager, live.id, "please\nrun: echo made-by-agent > agent.txt")
            seen["file"] = (await live.sandbox.run(["cat", "repo/agent.txt"])).stdout
            seen["second"] = await typed_turn(manager, live.id, "and what now?")
            [seen["scan"]] = await probe(live.sandbox, ("proc_scan",))
            seen["grep"] = await live.sandbox.run(["grep", "-rl", agent.key, "/workspace", "/tmp"])
            seen["pushed"] = await manager.end(live.id)
            await manager.resume(live.id, member.id, env)
            seen["third"] = await typed_turn(manager, live.id, "still there?")
            await manager.end(live.id)
            seen["id"] = live.id
        finally:
            await manager.shutdown()
        return seen

    seen = asyncio.run(go())
    events, final = seen["first"]
    assert final.code == 0, events
    calls = [e for e in events if isinstance(e, ToolCall)]
    assert calls, (events, [(s.path, s.headers, str(s.body)[:200]) for s in stand_in.seen])
    assert [c.status for c in calls] == ["running", "ok"] and "echo made-by-agent" in calls[0].input
    assert seen["file"] == b"made-by-agent\n"  # the tool ran in the sandbox, in the clone
    assert "Prompts so far: 1" in said(events)
    events, final = seen["second"]
    assert final.code == 0 and "Prompts so far: 2" in said(events), events  # one conversation
    events, final = seen["third"]
    assert final.code == 0 and "Prompts so far: 3" in said(events), events  # continued across end and resume

    # the change was kept and pushed, though the agent committed nothing
    assert seen["pushed"].changed
    bare = str(host.root / "acme" / "widgets.git")
    shown = git("--git-dir", bare, "show", f"refs/heads/ringfence/{seen['id']}:agent.txt").stdout
    assert shown == "made-by-agent\n"
    kept = content.read_content(store, seen["id"])
    assert any(r.kind == "code_change" and "agent.txt" in r.text for r in kept)
    for record in kept:
        if record.kind == "output":
            assert ('{"type"' not in record.text and "▸" in record.text) or record.turn != 1
        if record.kind == "events":
            parsed = [from_dict(json.loads(line)) for line in record.text.splitlines()]
            assert any(isinstance(e, Text) for e in parsed)
    assert content.read_agent_state(store, seen["id"]) is not None  # sealed after each turn

    # the key went out on every model request, and the placeholder never did
    requests = stand_in.model_requests()
    assert len(requests) >= 4
    for request in requests:
        sent = request.header("x-api-key") if agent.provider == "anthropic" else request.header("authorization")
        assert sent in (agent.key, f"Bearer {agent.key}"), request.headers
        assert "ringfence-placeholder-key" not in json.dumps(request.headers)
    # ... and is nowhere the agent or the store could show it
    assert [entry for entry, text in seen["scan"].items() if agent.key in text] == []
    assert seen["grep"].stdout == b""
    assert files_containing(store_dir(store), agent.key.encode()) == []
    assert all(agent.key not in r.text for r in kept)
    # telemetry off: nothing called home (nor went anywhere at all: these turns need no network but the gateway)
    called = [(r.get("target"), r.get("decision"), r.get("rule")) for r in records.egress]
    assert called == [], called


def _member(
    store: Store,
    host: GitHost,  # noqa: F811
    agent: Agent,
    stand_in: StandInProvider,
    *,
    plan: str,
    zdr: bool = False,
) -> tuple[Any, Any]:
    """A member of an organization on `plan` whose provider is the stand-in, and their repository on `host`."""
    org = accounts.create_organization(store, "acme", plan, NOW, actor="t")
    member = accounts.create_user(store, "Mia Member", NOW, actor="t", org_id=org.id)
    if zdr:
        accounts.set_org_switch(store, org.id, "zdr", True, NOW, actor=member.id)
    repo = accounts.connect_repository(store, member.id, f"{host.url}/acme/widgets.git", NOW, actor="t")
    providers.set_provider(store, org.id, agent.provider, None, stand_in.url, Secret(agent.key), NOW, actor="t")
    return member, repo


def store_dir(store: Store) -> Path:
    url = str(store.engine.url)
    return Path(url.removeprefix("sqlite:///")).parent


def test_under_zdr_a_real_agent_keeps_no_content_and_no_state(
    store: Store,
    backend: BubblewrapBackend,  # noqa: F811
    host: GitHost,  # noqa: F811
    tmp_path: Path,
    agents: Any,
    agent: Agent,
    stand_in: StandInProvider,
) -> None:
    member, repo = _member(store, host, agent, stand_in, plan="api", zdr=True)
    records = Records()

    async def go() -> tuple[str, list[AgentEvent], Exit]:
        manager = _manager(store, backend, host, tmp_path, agents, records)
        try:
            live = await manager.start(caller(store, member.id), repo.id, Environment(agent=agent.preset))
            events, final = await typed_turn(manager, live.id, "run: echo zdr > zdr.txt")
            await manager.end(live.id)
            return live.id, events, final
        finally:
            await manager.shutdown()

    session_id, events, final = asyncio.run(go())
    assert final.code == 0 and any(isinstance(e, ToolCall) for e in events)  # the session worked live
    assert content.count_content(store, session_id) == 0
    assert content.read_agent_state(store, session_id) is None


def test_an_unconfigured_provider_gives_the_agent_an_error_naming_the_fix(
    store: Store,
    backend: BubblewrapBackend,  # noqa: F811
    host: GitHost,  # noqa: F811
    tmp_path: Path,
    agents: Any,
    agent: Agent,
) -> None:
    user = accounts.create_user(store, "u", NOW, actor="t", plan="pro")
    repo = accounts.connect_repository(store, user.id, f"{host.url}/acme/widgets.git", NOW, actor="t")
    records = Records()

    async def go() -> tuple[list[AgentEvent], Exit]:
        manager = _manager(store, backend, host, tmp_path, agents, records)
        try:
            live = await manager.start(caller(store, user.id), repo.id, Environment(agent=agent.preset))
            return await asyncio.wait_for(typed_turn(manager, live.id, "hello"), 120)
        finally:
            await manager.shutdown()

    events, _final = asyncio.run(go())
    errors = " ".join(e.message for e in events if isinstance(e, AgentError)) + said(events)
    assert "ringfence provider set" in errors or "/providers/" in errors, events


def test_through_the_api_a_preset_streams_typed_events_and_end_says_what_changed(
    store: Store,
    backend: BubblewrapBackend,  # noqa: F811
    host: GitHost,  # noqa: F811
    tmp_path: Path,
    agents: Any,
) -> None:
    user = accounts.create_user(store, "u", NOW, actor="t", plan="pro")
    _, token = accounts.create_api_key(store, user.id, "t", NOW, actor="t")
    repo = accounts.connect_repository(store, user.id, f"{host.url}/acme/widgets.git", NOW, actor="t")
    records = Records()
    with StandInProvider("openai") as stand_in:
        providers.set_provider(store, user.id, "openai", None, stand_in.url, Secret("sk-api-1"), NOW, actor=user.id)

        async def sessions() -> SessionManager:
            return _manager(store, backend, host, tmp_path, agents, records)

        with serving(create_app(store, clock=lambda: NOW, sessions=sessions)) as base:
            auth = {"Authorization": f"Bearer {token.reveal()}"}
            bad = httpx.post(f"{base}/v1/environments", json={"name": "x", "agent": "codx"}, headers=auth)
            assert bad.status_code == 422 and "unknown agent preset 'codx'" in bad.text
            made = httpx.post(f"{base}/v1/environments", json={"name": "cx", "agent": "codex"}, headers=auth)
            assert made.status_code == 201 and made.json()["settings"]["agent"] == "codex", made.text
            start = {"repository_id": repo.id, "environment": "cx"}
            started = httpx.post(f"{base}/v1/sessions", json=start, headers=auth, timeout=60)
            sid = started.json()["id"]
            with httpx.stream(
                "POST", f"{base}/v1/sessions/{sid}/prompts", json={"text": "run: echo api > api.txt"}, headers=auth,
                timeout=60,
            ) as stream:  # fmt: skip
                events = sse_events(stream)
            kinds = [kind for kind, _ in events]
            assert {"text", "tool_call", "usage"} <= set(kinds) and kinds[-1] == "exit", events
            assert not [data for kind, data in events if kind == "output" and data["stream"] == "stdout"]
            call = next(data for kind, data in events if kind == "tool_call" and data["status"] == "ok")
            assert call["name"] == "shell" and "echo api" in call["input"]
            kept = httpx.get(f"{base}/v1/sessions/{sid}/content", headers=auth).json()
            assert [k["kind"] for k in kept] == ["prompt", "output", "events", "code_change"]
            ended = httpx.post(f"{base}/v1/sessions/{sid}/end", headers=auth, timeout=60).json()
            assert ended["changed"] is True and ended["status"] == "stored"
            # a session that changes nothing: end says so
            again = httpx.post(f"{base}/v1/sessions", json=start, headers=auth, timeout=60).json()["id"]
            quiet = httpx.post(f"{base}/v1/sessions/{again}/end", headers=auth, timeout=60).json()
            assert quiet["changed"] is False


def test_the_cli_renders_typed_events_readably(capsys: pytest.CaptureFixture[str]) -> None:
    from ringfence.cli.session_cmd import render

    render("text", {"text": "Looking at it."})
    render("tool_call", {"id": "1", "name": "Bash", "input": "ls", "status": "running", "result": ""})
    render("tool_call", {"id": "1", "name": "Bash", "input": "ls", "status": "ok", "result": "a.txt\nb.txt"})
    render("usage", {"input_tokens": 10, "output_tokens": 2})
    render("agent_error", {"message": "model provider 'openai' is not configured"})
    said = capsys.readouterr()
    assert "Looking at it." in said.out and "▸ Bash ls" in said.out and "↳ ok a.txt …" in said.out
    assert "10 input tokens" in said.out and "not configured" in said.err
    assert "{" not in said.out
