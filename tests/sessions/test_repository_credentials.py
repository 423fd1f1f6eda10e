"""Repository credentials users can set (issue 15): a private repository host that requires its token (git
http-backend behind Basic or Bearer auth). Through the API, the owner stores the token (sealed; never returned,
never in an answer, an audit record or the sandbox); a session then clones and pushes with it. Without it, the
start is a clear refusal. Deleting it makes the next start fail again."""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from ringfence.egress.proxy import EgressProxy
from ringfence.gateway.git_proxy import Gateway
from ringfence.net.addresses import AddressPolicy
from ringfence.net.resolve import CachingResolver, StaticResolver
from ringfence.sandbox import BubblewrapBackend
from ringfence.server import create_app
from ringfence.sessions.manager import SessionManager, StoreHosts
from ringfence.store import accounts
from ringfence.store.db import Store
from tests.conftest import T0
from tests.gateway.git_host import GitHost, git, loopback_dialer, make_repository
from tests.sandbox.conftest import backend, sandbox_root  # noqa: F401 (fixtures)
from tests.servers import serving
from tests.store.helpers import files_containing

SECRET = "ghp_PRIVATE_REPO_TOKEN_5566"


def _sessions(store: Store, backend: BubblewrapBackend, tmp_path: Path) -> Callable[[], Awaitable[SessionManager]]:  # noqa: F811
    """The server's session manager with each repository's own host and its stored credential (as `serve` has)."""

    async def build() -> SessionManager:
        egress = EgressProxy(AddressPolicy.parse([]), CachingResolver(StaticResolver({})))
        return SessionManager(store, backend, tmp_path / "run", egress, Gateway(dialer=loopback_dialer()),
                              StoreHosts(store), lambda: T0)  # fmt: skip

    return build


@pytest.mark.parametrize("scheme", ["basic", "bearer"])
def test_a_private_repository_works_with_its_stored_credential_and_not_without(
    store: Store,
    backend: BubblewrapBackend,  # noqa: F811
    tmp_path: Path,
    scheme: str,
) -> None:
    make_repository(tmp_path / "host", "acme", "private")
    host = GitHost(tmp_path / "host", SECRET, scheme=scheme)
    user = accounts.create_user(store, "u", T0, actor="t", plan="pro")
    _, token = accounts.create_api_key(store, user.id, "t", T0, actor="t")
    other = accounts.create_user(store, "o", T0, actor="t", plan="pro")
    _, other_token = accounts.create_api_key(store, other.id, "t", T0, actor="t")
    repo = accounts.connect_repository(store, user.id, f"{host.url}/acme/private.git", T0, actor="t")
    auth = {"Authorization": f"Bearer {token.reveal()}"}
    path = f"/v1/users/{user.id}/repositories/{repo.id}/credential"
    app = create_app(store, clock=lambda: T0, sessions=_sessions(store, backend, tmp_path))
    try:
        with serving(app) as base:
            refused = httpx.post(f"{base}/v1/sessions", json={"repository_id": repo.id}, headers=auth, timeout=60)
            assert refused.status_code == 502 and "cloning acme/private failed" in refused.text, refused.text
            assert "the repository host refused the gateway's credential" in refused.text
            assert SECRET not in refused.text

            bad = [
                httpx.put(base + path, json={"kind": "ssh", "token": SECRET}, headers=auth),
                httpx.put(base + path, json={"kind": scheme, "token": ""}, headers=auth),
                httpx.put(base + path, json={"kind": scheme}, headers=auth),
            ]
            assert [b.status_code for b in bad] == [422, 422, 422] and all(SECRET not in b.text for b in bad)
            theirs = httpx.put(base + path, json={"kind": scheme, "token": "x"},
                               headers={"Authorization": f"Bearer {other_token.reveal()}"})  # fmt: skip
            assert theirs.status_code in (403, 404)

            stored = httpx.put(base + path, json={"kind": scheme, "token": SECRET}, headers=auth)
            assert stored.status_code == 200, stored.text
            assert SECRET not in stored.text and stored.json()["kind"] == scheme

            started = httpx.post(f"{base}/v1/sessions", json={"repository_id": repo.id}, headers=auth, timeout=60)
            assert started.status_code == 201, started.text
            sid = started.json()["id"]
            ended = httpx.post(f"{base}/v1/sessions/{sid}/end", headers=auth, timeout=60)
            assert ended.status_code == 200, ended.text
            pushed = git("--git-dir", str(tmp_path / "host" / "acme" / "private.git"), "rev-parse",
                         f"refs/heads/ringfence/{sid}")  # fmt: skip
            assert pushed.returncode == 0

            assert httpx.delete(base + path, headers=auth).status_code == 204
            assert httpx.delete(base + path, headers=auth).status_code == 404  # nothing left to delete
            again = httpx.post(f"{base}/v1/sessions", json={"repository_id": repo.id}, headers=auth, timeout=60)
            assert again.status_code == 502
        exported = io.StringIO()
        store.audit.export(store.engine, exported)
        assert "credential.set" in exported.getvalue() and "credential.deleted" in exported.getvalue()
        assert SECRET not in exported.getvalue()
        assert files_containing(tmp_path, SECRET.encode()) == []  # sealed at rest: not in the database file
    finally:
        host.close()
