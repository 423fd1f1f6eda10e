"""Environments: settings are checked and each refusal names what was wrong; only who manages an account changes
its environments, everyone in it uses them; a setup script runs in a real sandbox under its own network policy,
then the agent's policy applies (and cuts what the setup opened); an organization admin sees the metadata of
the organization's sessions and never their content."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from ringfence.agents.presets import Template
from ringfence.api.app import create_app
from ringfence.egress.audit import BatchedAudit
from ringfence.egress.proxy import EgressProxy
from ringfence.gateway.credentials import StaticToken
from ringfence.gateway.git_proxy import Gateway
from ringfence.net.addresses import AddressPolicy
from ringfence.net.resolve import CachingResolver, StaticResolver
from ringfence.sandbox import BubblewrapBackend, Output
from ringfence.sessions.environments import EnvironmentSettings
from ringfence.sessions.manager import RepositoryHost, SessionError, SessionManager
from ringfence.store import accounts, content
from ringfence.store.crypto import Secret
from ringfence.store.db import Store
from tests.cli.test_cli import ringfence
from tests.conftest import T0
from tests.egress.harness import http_upstream
from tests.gateway.git_host import GitHost, loopback_dialer
from tests.sandbox.conftest import backend, sandbox_root  # noqa: F401 (fixtures)
from tests.servers import serving
from tests.sessions.test_manager import NOW, TOKEN, caller, host  # noqa: F401 (fixture)


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"network": "open"}, "network"),
        ({"network": "custom", "allow": ["*.com"]}, "too broad"),
        ({"setup_network": "custom", "setup_allow": ["*"]}, "setup network"),
        ({"agent": "claude -p"}, "{prompt}"),
        ({"agent": "claude -p '{prompt}"}, "does not split"),
        ({"agent": []}, "agent"),
        ({"agent": "claude-cod"}, "unknown agent preset 'claude-cod' (presets: builtin, claude-code, codex)"),
        ({"agent": "codex", "model": "gpt 5; rm"}, "model"),
        ({"env": {"GIT_AUTHOR_NAME": "someone else"}}, "set by ringfence"),
        ({"env": {"HTTPS_PROXY": "http://elsewhere"}}, "set by ringfence"),
        ({"env": {"ANTHROPIC_API_KEY": "k"}}, "set by ringfence"),
        ({"env": {"1BAD": "x"}}, "not a valid name"),
        ({"limits": {"memory": "lots"}}, "limits"),
        ({"limits": {"workspace": "1M"}}, "below 64 MiB"),
        ({"limits": {"cpu_weight": 0}}, "cpu_weight"),
        ({"setup_timeout_seconds": 0}, "setup_timeout_seconds"),
        ({"netwrok": "none"}, "netwrok"),  # a misspelt field is refused, not silently ignored
    ],
)
def test_bad_settings_are_refused_and_say_what(settings: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError) as caught:
        EnvironmentSettings.model_validate(settings)
    assert named in str(caught.value)


def test_an_agent_template_is_split_once_and_the_prompt_stays_one_argument() -> None:
    env = EnvironmentSettings.model_validate({"agent": "claude -p {prompt} --output-format text"}).runtime("x")
    assert env.agent == Template(("claude", "-p", "{prompt}", "--output-format", "text"))
    prompt = "fix it; rm -rf / $(reboot) '\""
    assert env.runs.argv(prompt)[2] == prompt  # run as argv: never through a shell


def _auth(store: Store, user_id: str) -> dict[str, str]:
    _, token = accounts.create_api_key(store, user_id, "t", T0, actor="t")
    return {"Authorization": f"Bearer {token.reveal()}"}


def test_who_manages_and_who_uses_environments(store: Store) -> None:
    org = accounts.create_organization(store, "acme", "team", T0, actor="t")
    admin = accounts.create_user(store, "a", T0, actor="t", org_id=org.id, org_admin=True)
    member = accounts.create_user(store, "m", T0, actor="t", org_id=org.id)
    consumer = accounts.create_user(store, "c", T0, actor="t", plan="pro")
    admin_auth, member_auth, consumer_auth = (_auth(store, u.id) for u in (admin, member, consumer))
    secret_value = "sk-live-SHOULD-NEVER-BE-AUDITED-1234"
    body = {"name": "ci", "network": "custom", "allow": ["pypi.org"], "env": {"TOOL_TOKEN": secret_value}}
    with serving(create_app(store, clock=lambda: T0)) as base:
        refused = httpx.post(f"{base}/v1/environments", json=body, headers=member_auth)
        assert refused.status_code == 403 and org.id in refused.text
        made = httpx.post(f"{base}/v1/environments", json=body, headers=admin_auth)
        assert made.status_code == 201, made.text
        assert made.json()["settings"]["telemetry"] is False  # off unless asked for
        again = httpx.post(f"{base}/v1/environments", json=body, headers=admin_auth)
        assert again.status_code == 409 and "already exists" in again.text
        seen = httpx.get(f"{base}/v1/environments", headers=member_auth).json()
        assert [e["name"] for e in seen] == ["ci"]  # members see and use them
        assert httpx.get(f"{base}/v1/environments", headers=consumer_auth).json() == []  # not another account's
        assert httpx.get(f"{base}/v1/environments/ci", headers=consumer_auth).status_code == 404
        replaced = httpx.put(f"{base}/v1/environments/ci", json={"network": "none"}, headers=admin_auth)
        assert replaced.status_code == 200 and replaced.json()["settings"]["network"] == "none"
        assert httpx.put(f"{base}/v1/environments/ci", json={"network": "x"}, headers=admin_auth).status_code == 422
        assert httpx.get(f"{base}/v1/environments/ci", headers=admin_auth).json()["settings"]["network"] == "none"
        own = httpx.post(f"{base}/v1/environments", json={"name": "mine"}, headers=consumer_auth)
        assert own.status_code == 201  # a consumer manages their own account
        assert httpx.delete(f"{base}/v1/environments/ci", headers=member_auth).status_code == 403
        assert httpx.delete(f"{base}/v1/environments/ci", headers=admin_auth).status_code == 204
        assert httpx.get(f"{base}/v1/environments", headers=member_auth).json() == []
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT * FROM audit_records").all()
    dumped = " ".join(v.decode("latin-1") if isinstance(v, bytes) else str(v) for row in rows for v in row)
    assert "environment.created" in dumped and "TOOL_TOKEN" in dumped and secret_value not in dumped


def test_the_environment_commands(store: Store, tmp_path: Path) -> None:
    user = accounts.create_user(store, "c", T0, actor="t", plan="pro")
    _, token = accounts.create_api_key(store, user.id, "t", T0, actor="t")
    setup = tmp_path / "setup.sh"
    setup.write_text("pip install -r requirements.txt\n")
    with serving(create_app(store, clock=lambda: T0)) as base:

        def cli(*args: str) -> Any:
            return ringfence("environment", *args, "--server", base, "--token", token.reveal())

        made = cli("set", "py", "--network", "custom", "--allow", "github.com", "--setup-file", str(setup),
                   "--setup-network", "trusted", "--memory", "1G", "--env", "MODE=ci")  # fmt: skip
        assert made.returncode == 0 and "created" in made.stdout, made.stderr
        shown = cli("show", "py")
        assert shown.returncode == 0 and "requirements.txt" in shown.stdout and '"1G"' in shown.stdout
        listed = cli("list")
        assert "py" in listed.stdout and "yes (trusted)" in listed.stdout
        replaced = cli("set", "py", "--network", "none")
        assert replaced.returncode == 0 and "replaced" in replaced.stdout
        bad = cli("set", "py", "--network", "custom", "--allow", "*.com")
        assert bad.returncode == 1 and "too broad" in bad.stderr
        assert '"none"' in cli("show", "py").stdout  # the refused change stored nothing
        assert cli("set", "py", "--env", "NOEQUALS").returncode == 2
        assert cli("delete", "py").returncode == 0
        assert cli("show", "py").returncode == 1


async def _manager(store: Store, backend: BubblewrapBackend, host: GitHost, tmp_path: Path, records: list[Any]):  # noqa: F811
    audit = BatchedAudit(records.extend, lambda: "t", interval=0.01)
    audit.start()
    egress = EgressProxy(
        AddressPolicy.parse(["127.0.0.1/32"]),
        CachingResolver(StaticResolver({"ok.example": ["127.0.0.1"], "registry.example": ["127.0.0.1"]})),
        audit,
    )
    manager = SessionManager(
        store, backend, tmp_path / "run", egress, Gateway(dialer=loopback_dialer()),
        RepositoryHost(host.url, lambda _repo: StaticToken("basic", Secret(TOKEN))), lambda: NOW,
    )  # fmt: skip
    manager.closers.append(audit.close)
    return manager


def test_a_setup_script_runs_under_its_own_network_policy_then_the_agents_applies(
    store: Store,
    backend: BubblewrapBackend,  # noqa: F811
    host: GitHost,  # noqa: F811
    tmp_path: Path,
) -> None:
    user = accounts.create_user(store, "u", NOW, actor="t", plan="pro")
    repo = accounts.connect_repository(store, user.id, f"{host.url}/acme/widgets.git", NOW, actor="t")
    web = http_upstream()
    port = web.server_address[1]
    fetch = (
        'python3 -c "import urllib.request, sys; '
        f"print('setup fetched', urllib.request.urlopen('http://registry.example:{port}/pkg').status)\""
    )
    settings = EnvironmentSettings.model_validate(
        {
            "network": "none",
            "setup": f"{fetch}\necho installed > .deps-installed\n",
            "setup_network": "custom",
            "setup_allow": [f"registry.example:{port}"],
            "env": {"RINGFENCE_AGENT_TRY": f"http://registry.example:{port}/pkg\n"},
        }
    )
    env = settings.runtime("py")
    records: list[dict[str, Any]] = []
    steps: list[tuple[str, str]] = []

    async def go() -> tuple[str, str, bytes]:
        manager = await _manager(store, backend, host, tmp_path, records)
        try:
            live = await manager.start(caller(store, user.id), repo.id, env, progress=lambda s, d: steps.append((s, d)))
            output = bytearray()
            async for event in manager.prompt(live.id, "look around"):
                if isinstance(event, Output):
                    output.extend(event.data)
            deps = await live.sandbox.read_file("repo/.deps-installed")
            await manager.end(live.id)
            return live.id, output.decode(), deps
        finally:
            await manager.shutdown()

    try:
        session_id, output, deps = asyncio.run(go())
    finally:
        web.shutdown()
        web.server_close()
    said = "".join(d for s, d in steps if s == "setup")
    assert "setup fetched 200" in said and deps == b"installed\n"
    assert [s for s, _ in steps][-1] == "ready"
    assert f"GET http://registry.example:{port}/pkg -> 403" in output  # the agent's policy: network none
    decided = [(r.get("phase"), r["host"], r["decision"]) for r in records if r.get("host") == "registry.example"]
    assert decided == [("setup", "registry.example", "allow"), ("agent", "registry.example", "deny")]
    assert content.read_content(store, session_id)[0].text == "look around"


@pytest.mark.parametrize(
    ("script", "reason"), [("echo broken >&2; exit 3", "exited with 3: broken"), ("sleep 30", "timed out")]
)
def test_a_failing_setup_script_fails_the_start_with_its_reason_and_leaves_nothing(
    store: Store,
    backend: BubblewrapBackend,  # noqa: F811
    host: GitHost,  # noqa: F811
    tmp_path: Path,
    script: str,
    reason: str,
) -> None:
    user = accounts.create_user(store, "u", NOW, actor="t", plan="pro")
    repo = accounts.connect_repository(store, user.id, f"{host.url}/acme/widgets.git", NOW, actor="t")
    env = EnvironmentSettings.model_validate({"setup": script, "setup_timeout_seconds": 2}).runtime("broken")

    async def go() -> str:
        manager = await _manager(store, backend, host, tmp_path, [])
        try:
            with pytest.raises(SessionError) as caught:
                await manager.start(caller(store, user.id), repo.id, env)
            return str(caught.value)
        finally:
            await manager.shutdown()

    message = asyncio.run(go())
    assert "setup script of environment broken" in message and reason in message
    assert not list(backend.root.glob("sbx_*")) and not list((tmp_path / "run").iterdir())


def test_an_org_admin_sees_session_metadata_never_content(store: Store) -> None:
    org = accounts.create_organization(store, "acme", "team", T0, actor="t")
    admin = accounts.create_user(store, "a", T0, actor="t", org_id=org.id, org_admin=True)
    member = accounts.create_user(store, "m", T0, actor="t", org_id=org.id)
    outsider = accounts.create_organization(store, "other", "team", T0, actor="t")
    other_admin = accounts.create_user(store, "o", T0, actor="t", org_id=outsider.id, org_admin=True)
    session = content.start_session(store, member.id, T0, repository_id=None)
    content.put_content(store, session.id, "prompt", "the member's private prompt", T0, turn=1)
    admin_auth, member_auth, other_auth = (_auth(store, u.id) for u in (admin, member, other_admin))
    with serving(create_app(store, clock=lambda: T0)) as base:
        seen = httpx.get(f"{base}/v1/organizations/{org.id}/sessions", headers=admin_auth)
        assert seen.status_code == 200
        rows: Sequence[dict[str, Any]] = seen.json()
        assert [(r["id"], r["user_id"]) for r in rows] == [(session.id, member.id)]
        assert "private prompt" not in seen.text and "retention_rule" in rows[0]
        assert httpx.get(f"{base}/v1/organizations/{org.id}/sessions", headers=member_auth).status_code == 403
        assert httpx.get(f"{base}/v1/organizations/{org.id}/sessions", headers=other_auth).status_code == 403
        assert httpx.get(f"{base}/v1/sessions/{session.id}/content", headers=admin_auth).status_code == 404
        mine = httpx.get(f"{base}/v1/sessions/{session.id}/content", headers=member_auth)
        assert mine.json()[0]["text"] == "the member's private prompt"
