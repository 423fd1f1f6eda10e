"""An organization's GitHub App (issue 15): its admins set it (`PUT /v1/organizations/{org}/github-app`, the key
sealed and never returned); its members' repositories on the app's host are then cloned and pushed with
installation tokens minted for that one repository and revoked at the session's end, with no token of the
member's own. Bad input is refused naming the field; others cannot set it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ringfence.egress.proxy import EgressProxy
from ringfence.gateway.git_proxy import Gateway
from ringfence.net.addresses import AddressPolicy
from ringfence.net.resolve import CachingResolver, StaticResolver
from ringfence.sandbox import BubblewrapBackend
from ringfence.server import create_app
from ringfence.sessions.manager import Environment, SessionManager
from ringfence.sessions.upstreams import StoreHosts
from ringfence.store import accounts, github_apps
from ringfence.store.db import Store
from tests.api.test_providers import ALLOW_LOOPBACK
from tests.gateway.git_host import GitHost, git, loopback_dialer, make_repository
from tests.gateway.test_github_adapter import PEM, FakeGitHub
from tests.sandbox.conftest import backend, sandbox_root  # noqa: F401 (fixtures)
from tests.servers import serving
from tests.sessions.test_manager import NOW, caller
from tests.store.helpers import files_containing


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    server = FakeGitHub()
    yield server
    server.close()


@pytest.fixture
def app_host(tmp_path: Path) -> Iterator[GitHost]:
    make_repository(tmp_path / "host", "acme", "widgets")
    server = GitHost(tmp_path / "host", "ghs_minted_1")  # what the fake GitHub mints first
    yield server
    server.close()


def test_an_org_github_app_serves_its_members_repositories(
    store: Store,
    backend: BubblewrapBackend,  # noqa: F811
    github: FakeGitHub,
    app_host: GitHost,
    tmp_path: Path,
) -> None:
    org = accounts.create_organization(store, "acme", "team", NOW, actor="t")
    admin = accounts.create_user(store, "ada", NOW, actor="t", org_id=org.id, org_admin=True)
    member = accounts.create_user(store, "mo", NOW, actor="t", org_id=org.id)
    _, admin_token = accounts.create_api_key(store, admin.id, "t", NOW, actor="t")
    _, member_token = accounts.create_api_key(store, member.id, "t", NOW, actor="t")
    body = {"app_id": "12345", "private_key": PEM, "api_url": github.url}
    with serving(create_app(store, clock=lambda: NOW, dialer=ALLOW_LOOPBACK)) as base:
        url = f"{base}/v1/organizations/{org.id}/github-app"
        as_member = {"Authorization": f"Bearer {member_token.reveal()}"}
        as_admin = {"Authorization": f"Bearer {admin_token.reveal()}"}
        refused = httpx.put(url, json=body, headers=as_member)
        assert refused.status_code == 403 and "only an admin" in refused.text
        for wrong, field in (
            ({**body, "private_key": "not a key"}, "private_key"),
            ({**body, "api_url": "ftp://x"}, "api_url"),
            ({**body, "api_url": "http://169.254.169.254/"}, "does not dial"),
            ({**body, "app_id": "1 2"}, "app_id"),
        ):
            bad = httpx.put(url, json=wrong, headers=as_admin)
            assert bad.status_code == 422 and field in bad.text, (field, bad.text)
            assert PEM not in bad.text
        made = httpx.put(url, json=body, headers=as_admin)
        assert made.status_code == 200 and made.json()["git_host"] == "127.0.0.1", made.text
        shown = httpx.get(url, headers=as_member)
        assert shown.status_code == 200 and shown.json()["app_id"] == "12345" and "BEGIN" not in shown.text
    assert files_containing(Path(str(store.engine.url).removeprefix("sqlite:///")).parent, b"BEGIN PRIVATE") == []

    repo = accounts.connect_repository(store, member.id, f"{app_host.url}/acme/widgets.git", NOW, actor="t")

    async def go() -> str:
        manager = SessionManager(
            store, backend, tmp_path / "run",
            EgressProxy(AddressPolicy.parse([]), CachingResolver(StaticResolver({}))),
            Gateway(dialer=loopback_dialer()), StoreHosts(store, loopback_dialer()), lambda: NOW,
        )  # fmt: skip
        try:
            live = await manager.start(caller(store, member.id), repo.id, Environment(network="none"))
            await live.sandbox.run(["sh", "-c", "echo app > repo/app.txt"])
            return (await manager.end(live.id)).commit
        finally:
            await manager.shutdown()

    pushed = asyncio.run(go())
    bare = str(app_host.root / "acme" / "widgets.git")
    branches = git("--git-dir", bare, "for-each-ref", "--format=%(objectname)", "refs/heads/ringfence/").stdout
    assert pushed in branches  # cloned and pushed with the installation token alone
    assert github.minted >= 1 and github.revoked == ["ghs_minted_1"]  # minted for the session, revoked at its end
    assert app_host.seen and all(seen.authorized for seen in app_host.seen)

    github_apps.delete_github_app(store, org.id, NOW, actor=admin.id)
    assert github_apps.github_app_info(store, org.id) is None
