"""T3: keys carry their promises. A session started with an API key marked ZDR is a ZDR session whatever the
organization's switch, through the API and through the console signed in with that key: it answers `zdr: true`
and keeps no prompt, output or code change. The same key with ZDR off keeps them (the control)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from ringfence.sandbox import BubblewrapBackend
from ringfence.server import create_app
from ringfence.store import accounts, content
from ringfence.store.db import Store
from ringfence.store.models import Session
from tests.conftest import T0
from tests.gateway.git_host import GitHost
from tests.sandbox.conftest import backend, sandbox_root  # noqa: F401 (fixtures)
from tests.servers import serving
from tests.sessions.test_api import _sessions, sse_events
from tests.sessions.test_manager import host  # noqa: F401 (fixture)


def _member_with_key(store: Store, git_host: GitHost, *, zdr_key: bool) -> tuple[str, str]:
    org = accounts.create_organization(store, "acme", "api", T0, actor="t")
    member = accounts.create_user(store, "m", T0, actor="t", org_id=org.id)
    _, token = accounts.create_api_key(store, member.id, "k", T0, actor="t", zdr=zdr_key)
    repo = accounts.connect_repository(store, member.id, f"{git_host.url}/acme/widgets.git", T0, actor="t")
    return token.reveal(), repo.id


@pytest.mark.parametrize("zdr_key", [True, False])
def test_a_session_started_through_the_api_with_a_zdr_key_keeps_nothing(
    zdr_key: bool,
    store: Store,
    backend: BubblewrapBackend,  # noqa: F811
    host: GitHost,  # noqa: F811
    tmp_path: Path,
) -> None:
    token, repo_id = _member_with_key(store, host, zdr_key=zdr_key)
    with serving(
        create_app(store, clock=lambda: T0, sessions=_sessions(store, backend, host, tmp_path, lambda: T0))
    ) as base:
        auth = {"Authorization": f"Bearer {token}"}
        started = httpx.post(f"{base}/v1/sessions", json={"repository_id": repo_id}, headers=auth, timeout=60)
        assert started.status_code == 201, started.text
        sid = started.json()["id"]
        assert started.json()["zdr"] is zdr_key
        with httpx.stream(
            "POST", f"{base}/v1/sessions/{sid}/prompts", json={"text": "write the notes"}, headers=auth, timeout=60
        ) as stream:
            sse_events(stream)
        shown = httpx.get(f"{base}/v1/sessions/{sid}", headers=auth).json()
        assert shown["zdr"] is zdr_key
        assert httpx.post(f"{base}/v1/sessions/{sid}/end", headers=auth, timeout=60).status_code == 200
    kept = [record.kind for record in content.read_content(store, sid)]
    assert kept == ([] if zdr_key else ["prompt", "output", "code_change"])


def test_a_session_started_in_the_console_with_a_zdr_key_keeps_nothing(
    store: Store,
    backend: BubblewrapBackend,  # noqa: F811
    host: GitHost,  # noqa: F811
    tmp_path: Path,
) -> None:
    token, repo_id = _member_with_key(store, host, zdr_key=True)
    with (
        serving(
            create_app(store, clock=lambda: T0, sessions=_sessions(store, backend, host, tmp_path, lambda: T0))
        ) as base,
        httpx.Client(base_url=base, follow_redirects=False, timeout=60) as client,
    ):
        assert client.post("/ui/login", data={"token": token}).status_code == 303
        csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', client.get("/ui/").text)
        assert csrf
        started = client.post("/ui/sessions", data={"repository_id": repo_id, "csrf": csrf[1]})
        assert started.status_code == 303 and "/ui/sessions/" in started.headers["location"], started.headers
        sid = started.headers["location"].split("?")[0].rsplit("/", 1)[1]
        said = client.post(f"/ui/sessions/{sid}/prompt", data={"text": "write the notes", "csrf": csrf[1]})
        assert said.status_code in (200, 303), said.text
        client.post(f"/ui/sessions/{sid}/end", data={"csrf": csrf[1]})
    with store.read() as db:
        row = db.get(Session, sid)
        assert row is not None and row.zdr is True
    assert content.read_content(store, sid) == []
