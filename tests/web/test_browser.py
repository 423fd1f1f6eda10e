"""The console in a real browser (Playwright driving Debian's Chromium, headless) against a real server with real
sandboxes, both proxies auditing into the store, and a real git host: sign in, start a session from the
console, watch its output arrive, see a denied connection in its timeline and in the data-flow picture, turn
training off and see eligibility change, delete the session and see it gone; an organization admin's page.

Screenshots are written to tmp_path, or to $RINGFENCE_SCREENSHOTS (docs/images/ holds the committed ones)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ringfence.egress.audit import BatchedAudit, StoreWriter
from ringfence.egress.proxy import EgressProxy
from ringfence.gateway.credentials import StaticToken
from ringfence.gateway.git_proxy import Gateway
from ringfence.net.addresses import AddressPolicy
from ringfence.net.resolve import CachingResolver, StaticResolver
from ringfence.sandbox import BubblewrapBackend
from ringfence.server import create_app
from ringfence.sessions.environments import EnvironmentSettings
from ringfence.sessions.manager import RepositoryHost, SessionManager
from ringfence.store import accounts, content, environments
from ringfence.store.crypto import Secret
from ringfence.store.db import Store
from tests.gateway.git_host import GitHost, loopback_dialer
from tests.sandbox.conftest import backend, sandbox_root  # noqa: F401 (fixtures)
from tests.servers import serving
from tests.sessions.test_manager import TOKEN, host  # noqa: F401 (fixture)

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = next((p for p in ("/usr/lib/chromium/chromium", "/usr/bin/chromium") if os.path.exists(p)), None)
# As root in a container: Chromium's own sandbox needs user namespaces it may not get; /dev/shm may be small.
FLAGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]
# Visible form controls without an accessible name (a <label>, aria-label or aria-labelledby): should be none.
UNLABELLED = """
[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
  .filter(el => !(el.labels && el.labels.length))
  .filter(el => !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby'))
  .map(el => el.outerHTML.slice(0, 120))
"""
NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)


@pytest.fixture
def browser() -> Iterator[object]:
    if CHROMIUM is None:
        pytest.fail("Chromium is missing: `make test` installs Debian's chromium package")
    with playwright.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        launched.close()


def _shots(tmp_path: Path) -> Path:
    target = Path(os.environ.get("RINGFENCE_SCREENSHOTS") or tmp_path / "shots")
    target.mkdir(parents=True, exist_ok=True)
    return target


def test_the_console_in_a_browser(
    store: Store,
    backend: BubblewrapBackend,  # noqa: F811
    host: GitHost,  # noqa: F811
    browser,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    user = accounts.create_user(store, "ana", NOW, actor="t", plan="pro")
    accounts.set_training(store, user.id, True, NOW, actor=user.id)
    _, token = accounts.create_api_key(store, user.id, "browser", NOW, actor="t")
    accounts.connect_repository(store, user.id, f"{host.url}/acme/widgets.git", NOW, actor="t")
    settings = EnvironmentSettings.model_validate(
        {"network": "none", "env": {"RINGFENCE_AGENT_TRY": "http://denied.example/\n"}}
    )
    environments.create_environment(store, user.id, "offline", settings.model_dump(), NOW, actor=user.id)

    async def sessions() -> SessionManager:
        stamp = lambda: NOW.isoformat()  # noqa: E731
        egress_audit, gateway_audit = BatchedAudit(StoreWriter(store), stamp), BatchedAudit(StoreWriter(store), stamp)
        egress_audit.start()
        gateway_audit.start()
        manager = SessionManager(
            store, backend, tmp_path / "run",
            EgressProxy(AddressPolicy.parse([]), CachingResolver(StaticResolver({})), egress_audit),
            Gateway(gateway_audit, dialer=loopback_dialer()),
            RepositoryHost(host.url, lambda _r: StaticToken("basic", Secret(TOKEN))),
            lambda: NOW,
        )  # fmt: skip
        manager.closers += [egress_audit.close, gateway_audit.close]
        return manager

    shots = _shots(tmp_path)
    with serving(create_app(store, clock=lambda: NOW, sessions=sessions)) as base:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{base}/ui/")
        assert page.url.endswith("/ui/login")
        page.fill("#token", token.reveal())
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/ui/")

        page.select_option("select[name=environment]", "offline")
        page.click("#start")
        page.wait_for_url(f"{base}/ui/sessions/**", timeout=60_000)
        session_id = page.url.split("/ui/sessions/")[1].split("?")[0]
        assert "session started" in page.inner_text(".flash")

        page.fill("#text", "add the notes")
        page.click("#prompt button")
        playwright.expect(page.locator("#output")).to_contain_text("edited AGENT_NOTES.md", timeout=60_000)
        playwright.expect(page.locator("#output")).to_contain_text("GET http://denied.example/ -> 403")
        page.wait_for_load_state("load")
        for _ in range(20):  # the proxies' records are batched into the store: bounded, a few reloads at most
            page.wait_for_timeout(300)
            page.reload()
            if "denied.example" in page.inner_text("#timeline") if page.locator("#timeline").count() else False:
                break
        denied = page.locator("#timeline tr.denied", has_text="denied.example")
        playwright.expect(denied).to_have_count(1)
        assert "deny" in denied.inner_text()
        picture = page.locator("figure.picture svg")
        playwright.expect(picture).to_contain_text("denied.example")
        playwright.expect(picture).to_contain_text("1 denied")
        playwright.expect(page.locator("#diff")).to_contain_text("AGENT_NOTES.md")
        page.screenshot(path=str(shots / "session.png"), full_page=True)

        page.goto(f"{base}/ui/")
        row = page.locator(f"tr[data-session='{session_id}']")
        playwright.expect(row.locator("td.training")).to_contain_text("eligible")
        playwright.expect(row.locator("td.training")).not_to_contain_text("not eligible")
        page.screenshot(path=str(shots / "sessions.png"), full_page=True)
        page.goto(f"{base}/ui/privacy")
        page.click("#training-toggle")
        playwright.expect(page.locator("#training-state")).to_have_text("off")
        page.screenshot(path=str(shots / "privacy.png"), full_page=True)
        page.goto(f"{base}/ui/")
        playwright.expect(row.locator("td.training")).to_contain_text("not eligible")

        page.goto(f"{base}/ui/dataflow")
        playwright.expect(page.locator("#dataflow svg")).to_contain_text("denied.example")
        page.screenshot(path=str(shots / "dataflow.png"), full_page=True)

        page.goto(f"{base}/ui/sessions/{session_id}")
        page.on("dialog", lambda dialog: dialog.accept())
        page.click("#delete")
        page.wait_for_url(f"{base}/ui/?**")
        assert "deleted" in page.inner_text(".flash")
        playwright.expect(page.locator(f"tr[data-session='{session_id}']")).to_have_count(0)
        page.close()
    assert content.count_content(store, session_id) == 0
    assert not list(backend.root.glob("sbx_*"))


def test_the_organization_page_in_a_browser(store: Store, browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    org = accounts.create_organization(store, "Acme", "team", NOW, actor="t")
    admin = accounts.create_user(store, "ada", NOW, actor="t", org_id=org.id, org_admin=True)
    member = accounts.create_user(store, "max", NOW, actor="t", org_id=org.id)
    _, token = accounts.create_api_key(store, admin.id, "laptop", NOW, actor="t")
    accounts.create_api_key(store, member.id, "ci", NOW, actor="t")
    content.start_session(store, member.id, NOW, repository_id=None)
    shots = _shots(tmp_path)
    with serving(create_app(store, clock=lambda: NOW)) as base:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{base}/ui/login")
        page.fill("#token", token.reveal())
        page.click("button[type=submit]")
        page.goto(f"{base}/ui/org")
        page.click("#dpp-toggle")
        playwright.expect(page.locator("#dpp-state")).to_have_text("on")
        page.click("text=Verify the chain now")
        playwright.expect(page.locator("#audit-status")).to_contain_text("intact")
        page.goto(f"{base}/ui/environments")
        page.fill("input[name=name]", "python")
        page.select_option("select[name=network]", "custom")
        page.fill("textarea[name=allow]", "pypi.org\nfiles.pythonhosted.org")
        page.fill("textarea[name=setup]", "pip install -r requirements.txt")
        page.click("text=Save")
        playwright.expect(page.locator("#environments")).to_contain_text("pypi.org")
        page.goto(f"{base}/ui/org")
        page.screenshot(path=str(shots / "organization.png"), full_page=True)
        for path in ("/ui/", "/ui/org", "/ui/environments", "/ui/privacy", "/ui/dataflow"):
            page.goto(f"{base}{path}")
            assert page.evaluate(UNLABELLED) == [], path  # every control has an accessible name
            page.set_viewport_size({"width": 390, "height": 844})  # a phone: the page itself must not scroll sideways
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), path
            page.set_viewport_size({"width": 1280, "height": 900})
        page.close()
    if os.environ.get("RINGFENCE_SCREENSHOTS"):
        shutil.rmtree(tmp_path / "shots", ignore_errors=True)
