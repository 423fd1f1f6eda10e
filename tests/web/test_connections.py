"""The console's connections page (issue 15): who manages the account sets and deletes model providers (keys are
password fields, sealed, never shown back); a member sees the names only and cannot set one; a user connects a
repository with its token and replaces the token; bad input comes back named, and nothing stored is changed. The
same checks as the API: a base URL or a repository the server may not dial is refused."""

from __future__ import annotations

import httpx

from ringfence.store import accounts, credentials, providers
from ringfence.store.db import Store
from tests.api.test_providers import ALLOW_LOOPBACK
from tests.conftest import T0
from tests.servers import serving
from tests.web.test_pages import _csrf, _signed_in

KEY = "sk-ant-CONSOLE-PROVIDER-KEY-4455"
REPO_TOKEN = "ghp_CONSOLE_REPO_TOKEN_6677"


def _flash(client: httpx.Client, answer: httpx.Response) -> str:
    assert answer.status_code == 303, answer.text
    return client.get(answer.headers["location"]).text


def test_an_admin_sets_providers_and_a_user_connects_a_private_repository(store: Store) -> None:
    org = accounts.create_organization(store, "acme", "team", T0, actor="t")
    admin = accounts.create_user(store, "ada", T0, actor="t", org_id=org.id, org_admin=True)
    member = accounts.create_user(store, "mo", T0, actor="t", org_id=org.id)
    _, admin_token = accounts.create_api_key(store, admin.id, "t", T0, actor="t")
    _, member_token = accounts.create_api_key(store, member.id, "t", T0, actor="t")
    with serving(create_app_for(store)) as base:
        with _signed_in(base, admin_token.reveal()) as client:
            page = client.get("/ui/connections")
            assert page.status_code == 200 and 'type="password"' in page.text
            csrf = _csrf(page.text)
            set_ = {"csrf": csrf, "name": "anthropic", "base_url": "http://127.0.0.1:9/", "api_key": KEY}
            shown = _flash(client, client.post("/ui/connections/providers", data=set_))
            assert "model provider anthropic set" in shown and KEY not in shown
            assert "http://127.0.0.1:9/" in shown
            bad = _flash(client, client.post("/ui/connections/providers", data={**set_, "kind": "gemini"}))
            assert "gemini" in bad and [p.kind for p in providers.list_providers(store, org.id)] == ["anthropic"]
            far = _flash(
                client, client.post("/ui/connections/providers", data={**set_, "base_url": "http://169.254.169.254/"})
            )
            assert "does not dial it" in far
            assert [p.base_url for p in providers.list_providers(store, org.id)] == ["http://127.0.0.1:9/"]
        with _signed_in(base, member_token.reveal()) as client:
            page = client.get("/ui/connections")
            assert "anthropic" in page.text and "admins set its model providers" in page.text
            csrf = _csrf(page.text)
            refused = _flash(client, client.post("/ui/connections/providers", data={**set_, "csrf": csrf}))
            assert "only who manages account" in refused
            gone = client.post("/ui/connections/providers/anthropic/delete", data={"csrf": csrf, "confirm": "yes"})
            assert "only who manages account" in _flash(client, gone)
            assert len(providers.list_providers(store, org.id)) == 1
            connect = {"csrf": csrf, "url": "http://127.0.0.1:9/acme/private.git", "token": REPO_TOKEN, "kind": "basic"}
            shown = _flash(client, client.post("/ui/connections/repositories", data=connect))
            assert "acme/private connected with its token" in shown and REPO_TOKEN not in shown
            [repo] = accounts.list_repositories(store, member.id)
            assert credentials.load_credential(store, repo.id)[1].reveal() == REPO_TOKEN
            replaced = client.post(f"/ui/connections/repositories/{repo.id}/token", data={"csrf": csrf, "token": "t2"})
            assert "token stored" in _flash(client, replaced)
            assert credentials.load_credential(store, repo.id)[1].reveal() == "t2"
        with _signed_in(base, admin_token.reveal()) as client:  # not the admin's repository
            csrf = _csrf(client.get("/ui/connections").text)
            theirs = client.post(f"/ui/connections/repositories/{repo.id}/token", data={"csrf": csrf, "token": "x"})
            assert "no repository" in _flash(client, theirs)
            assert credentials.load_credential(store, repo.id)[1].reveal() == "t2"
            deleted = client.post("/ui/connections/providers/anthropic/delete", data={"csrf": csrf, "confirm": "yes"})
            assert "deleted" in _flash(client, deleted) and providers.list_providers(store, org.id) == []


def create_app_for(store: Store):  # type: ignore[no-untyped-def]
    from ringfence.server import create_app

    return create_app(store, clock=lambda: T0, dialer=ALLOW_LOOPBACK)


def test_a_hostile_agents_words_stay_text_in_the_conversation(store: Store) -> None:
    """What an agent printed (its text, a tool's input and result, an error) is shown, never run: a page that
    rendered it as markup would hand the agent the user's console session."""
    import json

    from ringfence.store import content

    user = accounts.create_user(store, "ana", T0, actor="t", plan="pro")
    _, token = accounts.create_api_key(store, user.id, "t", T0, actor="t")
    row = content.start_session(store, user.id, T0, repository_id=None)
    attack = "<img src=x onerror=\"fetch('/ui/connections')\"><script>alert(1)</script>"
    events = [
        {"kind": "text", "text": attack},
        {"kind": "tool_call", "id": "t", "name": attack, "input": attack, "status": "running", "result": ""},
        {"kind": "tool_call", "id": "t", "name": attack, "input": attack, "status": "ok", "result": attack},
        {"kind": "agent_error", "message": attack},
    ]
    content.put_content(store, row.id, "prompt", attack, T0, turn=1)
    content.put_content(store, row.id, "events", "\n".join(json.dumps(e) for e in events), T0, turn=1)
    with serving(create_app_for(store)) as base, _signed_in(base, token.reveal()) as client:
        page = client.get(f"/ui/sessions/{row.id}").text
    assert "<script>alert(1)</script>" not in page and "<img src=x" not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 5  # prompt, text, tool name/input, result, error
