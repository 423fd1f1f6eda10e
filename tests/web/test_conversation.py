"""The console shows a session as a conversation (issue 15): with the real Claude Code CLI and the stand-in
provider, a prompt sent from the console streams the assistant's text and a collapsible tool call live, and the
session page shows the kept turns the same way (never raw JSON lines). The README's screenshot comes from here
(RINGFENCE_SCREENSHOTS=docs/images)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ringfence.egress.proxy import EgressProxy
from ringfence.gateway.credentials import StaticToken
from ringfence.gateway.git_proxy import Gateway
from ringfence.net.addresses import AddressPolicy
from ringfence.net.resolve import CachingResolver, StaticResolver
from ringfence.sandbox import BubblewrapBackend
from ringfence.server import create_app
from ringfence.sessions.environments import EnvironmentSettings
from ringfence.sessions.manager import RepositoryHost, SessionManager, StoreModels
from ringfence.store import accounts, environments, providers
from ringfence.store.crypto import Secret
from ringfence.store.db import Store
from ringfence.testing.providers import StandInProvider
from tests.agents.installed import installed_agents
from tests.gateway.git_host import GitHost, loopback_dialer
from tests.sandbox.conftest import backend, sandbox_root  # noqa: F401 (fixtures)
from tests.servers import serving
from tests.sessions.test_manager import TOKEN, host  # noqa: F401 (fixture)
from tests.web.test_browser import NOW, _shots, browser, playwright  # noqa: F401 (fixture)

KEY = "sk-ant-CONSOLE-CONVERSATION-7788"


@pytest.fixture
def stand_in() -> Iterator[StandInProvider]:
    with StandInProvider("anthropic") as server:
        yield server


def test_a_claude_code_session_reads_as_a_conversation(
    store: Store,
    backend: BubblewrapBackend,  # noqa: F811
    host: GitHost,  # noqa: F811
    browser,  # type: ignore[no-untyped-def]  # noqa: F811
    stand_in: StandInProvider,
    sandbox_root: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    agents = installed_agents(sandbox_root.parent / "installs").tools
    user = accounts.create_user(store, "ana", NOW, actor="t", plan="pro")
    _, token = accounts.create_api_key(store, user.id, "browser", NOW, actor="t")
    accounts.connect_repository(store, user.id, f"{host.url}/acme/widgets.git", NOW, actor="t")
    providers.set_provider(store, user.id, "anthropic", None, stand_in.url, Secret(KEY), NOW, actor=user.id)
    settings = EnvironmentSettings.model_validate({"network": "none", "agent": "claude-code"})
    environments.create_environment(store, user.id, "claude", settings.model_dump(), NOW, actor=user.id)

    async def sessions() -> SessionManager:
        return SessionManager(
            store, backend, tmp_path / "run",
            EgressProxy(AddressPolicy.parse([]), CachingResolver(StaticResolver({}))),
            Gateway(dialer=loopback_dialer()),
            RepositoryHost(host.url, lambda _r: StaticToken("basic", Secret(TOKEN))),
            lambda: NOW, models=StoreModels(store), agents=agents,
        )  # fmt: skip

    shots = _shots(tmp_path)
    with serving(create_app(store, clock=lambda: NOW, sessions=sessions)) as base:
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(f"{base}/ui/login")
        page.fill("#token", token.reveal())
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/ui/")
        page.select_option("select[name=environment]", "claude")
        page.click("#start")
        page.wait_for_url(f"{base}/ui/sessions/**", timeout=60_000)

        page.fill("#text", "Add a changelog entry, please.\nrun: echo '- ran in the sandbox' >> CHANGELOG.md")
        page.click("#prompt button")
        live = page.locator("#live")
        playwright.expect(live.locator("details.tool.ok")).to_contain_text("CHANGELOG.md", timeout=60_000)
        playwright.expect(live.locator(".msg.assistant").last).to_contain_text("The command ran")
        page.wait_for_timeout(1000)  # the page reloads itself once the turn is kept
        page.wait_for_load_state("load")
        conversation = page.locator("#conversation")
        playwright.expect(conversation.locator(".msg.prompt")).to_contain_text("Add a changelog entry")
        playwright.expect(conversation.locator(".msg.assistant").first).to_contain_text("Running")
        tool = conversation.locator("details.tool").first
        playwright.expect(tool).to_contain_text("Bash")
        tool.locator("summary").click()
        assert '{"type"' not in conversation.inner_text()
        playwright.expect(page.locator("#diff")).to_contain_text("ran in the sandbox")
        conversation.scroll_into_view_if_needed()
        conversation.screenshot(path=str(shots / "conversation.png"))
        assert KEY not in page.content()
