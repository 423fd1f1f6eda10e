"""Sessions through the REST API of a real server on loopback: start, prompt with the output as server-sent
events, show, end (branch pushed), delete; a user cannot see or touch another user's session."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from ringfence.api.app import create_app
from ringfence.egress.proxy import EgressProxy
from ringfence.gateway.credentials import StaticToken
from ringfence.gateway.git_proxy import Gateway
from ringfence.net.addresses import AddressPolicy
from ringfence.net.resolve import CachingResolver, StaticResolver
from ringfence.sandbox import BubblewrapBackend
from ringfence.sessions.manager import RepositoryHost, SessionManager
from ringfence.store import accounts, content
from ringfence.store.crypto import Secret
from ringfence.store.db import Store
from tests.conftest import T0
from tests.gateway.git_host import GitHost, git, loopback_dialer
from tests.sandbox.conftest import backend, sandbox_root  # noqa: F401 (fixtures)
from tests.servers import serving
from tests.sessions.test_manager import TOKEN, host  # noqa: F401 (fixture)


def sse_events(stream: httpx.Response) -> list[tuple[str | None, Any]]:
    """A server-sent event stream read to its end, as (event, data) pairs."""
    found: list[tuple[str | None, Any]] = []
    kind = None
    for line in stream.iter_lines():
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            found.append((kind, json.loads(line[6:])))
    return found


def _sessions(
    store: Store,
    backend: BubblewrapBackend,  # noqa: F811
    git_host: GitHost,
    tmp_path: Path,
    clock: Callable[[], datetime],
) -> Callable[[], Awaitable[SessionManager]]:
    """What the server calls to build its session manager: real proxies (no egress allowed but the gateway)."""

    async def build() -> SessionManager:
        egress = EgressProxy(AddressPolicy.parse([]), CachingResolver(StaticResolver({})))
        return SessionManager(
            store, backend, tmp_path / "run", egress, Gateway(dialer=loopback_dialer()),
            RepositoryHost(git_host.url, lambda _r: StaticToken("basic", Secret(TOKEN))), clock,
        )  # fmt: skip

    return build


def test_a_session_through_the_api(store: Store, backend: BubblewrapBackend, host: GitHost, tmp_path: Path) -> None:  # noqa: F811
    user = accounts.create_user(store, "u", T0, actor="t", plan="pro")
    _, token = accounts.create_api_key(store, user.id, "t", T0, actor="t")
    other = accounts.create_user(store, "o", T0, actor="t", plan="pro")
    _, other_token = accounts.create_api_key(store, other.id, "t", T0, actor="t")
    repo = accounts.connect_repository(store, user.id, f"{host.url}/acme/widgets.git", T0, actor="t")

    sessions = _sessions(store, backend, host, tmp_path, lambda: T0)
    with serving(create_app(store, clock=lambda: T0, sessions=sessions)) as base:
        auth = {"Authorization": f"Bearer {token.reveal()}"}
        made = httpx.post(f"{base}/v1/environments", json={"name": "offline", "network": "none"}, headers=auth)
        assert made.status_code == 201, made.text
        started = httpx.post(
            f"{base}/v1/sessions", json={"repository_id": repo.id, "environment": "offline"}, headers=auth, timeout=60
        )
        assert started.status_code == 201, started.text
        sid = started.json()["id"]
        assert started.json()["running"] and started.json()["branch"] == f"ringfence/{sid}"
        assert started.json()["environment_id"] == made.json()["id"]
        # Times in the API's one form (as for users, keys and organizations): UTC with a trailing Z.
        times = [started.json()[k] for k in ("created_at", "last_activity_at")] + [made.json()["updated_at"]]
        assert all(t.endswith("Z") and "+" not in t for t in times), times
        with httpx.stream(
            "POST", f"{base}/v1/sessions/{sid}/prompts", json={"text": "from the api"}, headers=auth, timeout=60
        ) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            events = sse_events(stream)
        assert events[-1] == ("exit", {"code": 0, "timed_out": False})
        assert "edited AGENT_NOTES.md" in "".join(e[1].get("text", "") for e in events)
        other_auth = {"Authorization": f"Bearer {other_token.reveal()}"}
        assert httpx.get(f"{base}/v1/sessions/{sid}", headers=other_auth).status_code == 404
        extra = httpx.post(f"{base}/v1/sessions/{sid}/prompts", json={"text": "x", "model": "y"}, headers=auth)
        assert extra.status_code == 422 and "model" in extra.text  # unknown fields are refused, not ignored
        running = httpx.post(f"{base}/v1/sessions/{sid}/resume", json={}, headers=auth)
        assert running.status_code == 409 and running.json()["error"]["code"] == "conflict", running.text
        assert "running already" in running.text  # what the caller did wrong, not a gateway failure (was 502)
        assert httpx.post(f"{base}/v1/sessions/{sid}/resume", json={}, headers=other_auth).status_code == 404
        assert httpx.post(f"{base}/v1/sessions/{sid}/end", headers=other_auth).status_code == 404
        shown = httpx.get(f"{base}/v1/sessions/{sid}", headers=auth).json()
        assert shown["turns"] == 1 and shown["retention_rule"] and not shown["interrupted"]
        kept = httpx.get(f"{base}/v1/sessions/{sid}/content", headers=auth).json()
        assert [(k["kind"], k["turn"]) for k in kept] == [("prompt", 1), ("output", 1), ("code_change", 1)]
        assert kept[0]["text"] == "from the api" and "AGENT_NOTES.md" in kept[2]["text"]
        assert httpx.get(f"{base}/v1/sessions/{sid}/content", headers=other_auth).status_code == 404
        ended = httpx.post(f"{base}/v1/sessions/{sid}/end", headers=auth, timeout=60)
        assert ended.status_code == 200, ended.text
        upstream = git("--git-dir", str(host.root / "acme" / "widgets.git"), "rev-parse", f"refs/heads/ringfence/{sid}")
        assert upstream.stdout.strip() == ended.json()["pushed"]
        assert httpx.post(f"{base}/v1/sessions/{sid}/prompts", json={"text": "x"}, headers=auth).status_code == 404
        assert content.count_content(store, sid) == 3
        rated = httpx.post(f"{base}/v1/sessions/{sid}/rating", json={"value": 3}, headers=auth)
        assert rated.status_code == 204
        for wrong_rating in (7, True, "1", 1.0):  # exactly 1, 2, 3 or "dismiss"
            bad_rating = httpx.post(f"{base}/v1/sessions/{sid}/rating", json={"value": wrong_rating}, headers=auth)
            assert bad_rating.status_code == 422, (wrong_rating, bad_rating.text)
        sent = httpx.post(f"{base}/v1/sessions/{sid}/feedback", json={"transcript": "it worked"}, headers=auth)
        assert sent.status_code == 201 and sent.json()["delete_after"].startswith("2031")
        commented = httpx.post(f"{base}/v1/sessions/{sid}/feedback", json={"comment": "good"}, headers=auth)
        assert commented.status_code == 201
        [*_, built] = [r for r in content.read_content(store, sid, include_feedback=True) if r.kind == "feedback"]
        assert (
            built.text.startswith("comment: good\n\n[turn 1 prompt]\nfrom the api") and "AGENT_NOTES.md" in built.text
        )
        for wrong in ({}, {"comment": "a", "transcript": "b"}, {"comment": ""}):
            refused = httpx.post(f"{base}/v1/sessions/{sid}/feedback", json=wrong, headers=auth)
            assert refused.status_code == 422 and "comment" in refused.text, refused.text
        with httpx.stream(
            "POST", f"{base}/v1/sessions/{sid}/resume", json={}, headers={**auth, "Accept": "text/event-stream"},
            timeout=60,
        ) as stream:  # fmt: skip
            steps = sse_events(stream)
        assert next(d["step"] for k, d in steps if k == "progress") == "sandbox"
        assert any("objects: 100%" in d["detail"] for k, d in steps if k == "progress" and d["step"] == "clone")
        assert steps[-2][0] == "progress" and steps[-2][1]["step"] == "ready"
        assert steps[-1][0] == "session" and steps[-1][1]["running"] and steps[-1][1]["id"] == sid
        assert httpx.delete(f"{base}/v1/sessions/{sid}", headers=auth).status_code == 204
        assert content.count_content(store, sid) == 0
        assert httpx.get(f"{base}/v1/sessions/{sid}/content", headers=auth).status_code == 404
        listed = httpx.get(f"{base}/v1/sessions", headers=auth).json()
        assert [s["state"] for s in listed] == ["deleted"]
        bad = httpx.post(
            f"{base}/v1/environments", json={"name": "wide", "network": "custom", "allow": ["*.com"]}, headers=auth
        )
        assert bad.status_code == 422 and "too broad" in bad.text
        assert [e["name"] for e in httpx.get(f"{base}/v1/environments", headers=auth).json()] == ["offline"]
        unknown = httpx.post(
            f"{base}/v1/sessions", json={"repository_id": repo.id, "environment": "wide"}, headers=auth
        )
        assert unknown.status_code == 404 and "wide" in unknown.text
        inline = httpx.post(f"{base}/v1/sessions", json={"repository_id": repo.id, "network": "full"}, headers=auth)
        assert inline.status_code == 422 and "network" in inline.text  # no inline override of an environment
        assert len(httpx.get(f"{base}/v1/sessions", headers=auth).json()) == 1  # nothing recorded for them
    assert not list(backend.root.glob("sbx_*"))


def test_without_sandboxes_the_session_routes_say_so(store: Store) -> None:
    user = accounts.create_user(store, "u", T0, actor="t", plan="pro")
    _, token = accounts.create_api_key(store, user.id, "t", T0, actor="t")
    with serving(create_app(store)) as base:
        answer = httpx.post(
            f"{base}/v1/sessions", json={"repository_id": "r"}, headers={"Authorization": f"Bearer {token.reveal()}"}
        )
    assert answer.status_code == 503 and "no sandboxes" in answer.text


def test_resume_recomputes_eligibility_and_retention_and_delete_removes_from_exports(
    store: Store,
    backend: BubblewrapBackend,  # noqa: F811
    host: GitHost,  # noqa: F811
    tmp_path: Path,
) -> None:
    """POLICY.md through the API, with a real sandbox each time: a consumer with training off gets 30 days and no
    training; turning training on changes nothing stored until the session is resumed; the resumed session is
    eligible as a whole and kept 5 years from the resume; a delete removes it from every later export."""
    from datetime import timedelta

    from ringfence.store.export import export_training

    now = [T0]
    user = accounts.create_user(store, "u", T0, actor="t", plan="pro")
    _, token = accounts.create_api_key(store, user.id, "t", T0, actor="t")
    repo = accounts.connect_repository(store, user.id, f"{host.url}/acme/widgets.git", T0, actor="t")

    sessions = _sessions(store, backend, host, tmp_path, lambda: now[0])

    def exported(at: int) -> list[str]:
        out = tmp_path / f"export-{at}.jsonl"
        return export_training(store, now[0], out, now[0], actor="t").sessions

    with serving(create_app(store, clock=lambda: now[0], sessions=sessions)) as base:
        auth = {"Authorization": f"Bearer {token.reveal()}"}

        def turn(path: str, body: dict[str, Any]) -> str:
            started = httpx.post(f"{base}{path}", json=body, headers=auth, timeout=60)
            assert started.status_code in (200, 201), started.text
            sid: str = started.json()["id"]
            prompted = httpx.post(f"{base}/v1/sessions/{sid}/prompts", json={"text": "go"}, headers=auth, timeout=60)
            assert prompted.status_code == 200 and "event: exit" in prompted.text
            assert httpx.post(f"{base}/v1/sessions/{sid}/end", headers=auth, timeout=60).status_code == 200
            return sid

        sid = turn("/v1/sessions", {"repository_id": repo.id})
        first = httpx.get(f"{base}/v1/sessions/{sid}", headers=auth).json()
        assert first["delete_after"].startswith((T0 + timedelta(days=30)).date().isoformat())
        assert exported(1) == []  # training off at its last activity
        now[0] = T0 + timedelta(days=2)
        on = httpx.put(f"{base}/v1/users/{user.id}/settings/training", json={"enabled": True}, headers=auth)
        assert on.status_code == 200, on.text
        assert httpx.get(f"{base}/v1/sessions/{sid}", headers=auth).json()["delete_after"] == first["delete_after"]
        assert exported(2) == []  # turning it on makes no stored session eligible...
        now[0] = T0 + timedelta(days=3)
        assert turn(f"/v1/sessions/{sid}/resume", {}) == sid  # ...until that session sees new activity
        resumed = httpx.get(f"{base}/v1/sessions/{sid}", headers=auth).json()
        assert resumed["delete_after"].startswith(f"{now[0].year + 5}-{now[0]:%m-%d}")
        assert resumed["retention_rule"] != first["retention_rule"]
        assert exported(3) == [sid]
        with open(tmp_path / "export-3.jsonl") as handle:
            turns = [item["turn"] for item in json.loads(handle.readline())["items"]]
        assert turns == [1, 1, 1, 2, 2, 2]  # eligible as a whole: the turn from before the resume too
        assert httpx.delete(f"{base}/v1/sessions/{sid}", headers=auth).status_code == 204
        now[0] = T0 + timedelta(days=4)
        assert exported(4) == []
    assert (tmp_path / "export-4.jsonl").read_bytes() == b""
