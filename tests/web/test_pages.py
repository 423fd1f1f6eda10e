"""The console over plain HTTP: sign-in sets an HttpOnly cookie, every form needs its CSRF token, each page
renders for whom it is meant and refuses the others, and nothing of another user's sessions shows."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from ringfence.server import create_app
from ringfence.store import accounts, content
from ringfence.store.db import Store
from ringfence.web.dataflow import flows, group_of, render_svg
from ringfence.web.diff import render_diff
from tests.conftest import T0
from tests.servers import serving


@contextmanager
def _signed_in(base: str, token: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, follow_redirects=False) as client:
        answer = client.post("/ui/login", data={"token": token})
        assert answer.status_code == 303 and answer.headers["location"] == "/ui/"
        cookie = answer.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
        yield client


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    assert found, "every form carries the CSRF token"
    return found[1]


def test_sign_in_csrf_and_the_pages(store: Store) -> None:
    user = accounts.create_user(store, "ana", T0, actor="t", plan="pro")
    _, token = accounts.create_api_key(store, user.id, "t", T0, actor="t")
    other = accounts.create_user(store, "bo", T0, actor="t", plan="pro")
    theirs = content.start_session(store, other.id, T0, repository_id=None)
    content.put_content(store, theirs.id, "prompt", "bo's private prompt", T0, turn=1)
    mine = content.start_session(store, user.id, T0, repository_id=None)
    with serving(create_app(store, clock=lambda: T0)) as base:
        anonymous = httpx.get(f"{base}/ui/", follow_redirects=False)
        assert anonymous.status_code == 303 and anonymous.headers["location"] == "/ui/login"
        wrong = httpx.post(f"{base}/ui/login", data={"token": "rf_0000000000000000_" + "x" * 43})
        assert wrong.status_code == 401 and "unknown, malformed or revoked" in wrong.text
        with _signed_in(base, token.reveal()) as client:
            page = client.get("/ui/")
            assert page.status_code == 200 and mine.id in page.text and theirs.id not in page.text
            assert "not eligible" in page.text  # training off: with the policy's reason
            csrf = _csrf(page.text)
            assert client.get(f"/ui/sessions/{theirs.id}").status_code == 404
            assert "bo's private prompt" not in client.get(f"/ui/sessions/{theirs.id}").text
            forged = client.post("/ui/privacy/training", data={"enabled": "on"})
            assert forged.status_code == 403 and "stale" in forged.text
            assert accounts.authenticate(store, token.reveal())[0].training is False  # nothing changed
            turned = client.post("/ui/privacy/training", data={"enabled": "on", "csrf": csrf})
            assert turned.status_code == 303
            assert accounts.authenticate(store, token.reveal())[0].training is True
            privacy = client.get("/ui/privacy").text
            assert "Turn training off" in privacy and "30 days" in privacy
            assert client.get("/ui/org").status_code == 403  # not an org admin
            bad_env = client.post("/ui/environments", data={"name": "w", "network": "custom", "allow": "*.com",
                                                            "csrf": csrf}, follow_redirects=True)  # fmt: skip
            assert "too broad" in bad_env.text
            good_env = client.post("/ui/environments", data={"name": "py", "network": "none", "csrf": csrf},
                                   follow_redirects=True)  # fmt: skip
            assert "environment py saved" in good_env.text and "<td>py</td>" in good_env.text
            assert client.get("/ui/dataflow").status_code == 200
            svg = client.get("/ui/dataflow.svg", params={"session": mine.id})
            assert svg.headers["content-type"].startswith("image/svg+xml") and svg.text.startswith("<svg")
            rated = client.post(f"/ui/sessions/{mine.id}/rating", data={"value": "2", "csrf": csrf},
                                follow_redirects=True)  # fmt: skip
            assert "only the rating is stored" in rated.text
            bad = client.post(
                f"/ui/sessions/{mine.id}/rating", data={"value": "7", "csrf": csrf}, follow_redirects=True
            )
            assert "is not 1, 2, 3 or dismiss" in bad.text
            sent = client.post(f"/ui/sessions/{mine.id}/feedback", data={"comment": "nice", "csrf": csrf},
                               follow_redirects=True)  # fmt: skip
            assert "feedback sent with the transcript; kept until 2031" in sent.text
            assert client.post(f"/ui/sessions/{theirs.id}/rating", data={"value": "1", "csrf": csrf}).status_code == 404
            asked = client.post(f"/ui/sessions/{mine.id}/delete", data={"csrf": csrf})
            assert asked.status_code == 200 and "cannot be undone" in asked.text  # no JavaScript: a page asks
            done = client.post(f"/ui/sessions/{mine.id}/delete", data={"csrf": csrf, "confirm": "yes"})
            assert done.status_code == 303 and content.count_content(store, mine.id) == 0
            out = client.post("/ui/logout", data={"csrf": csrf})
            assert out.status_code == 303 and 'rf_console=""' in out.headers["set-cookie"]


def test_an_org_admin_page(store: Store) -> None:
    org = accounts.create_organization(store, "acme", "team", T0, actor="t")
    admin = accounts.create_user(store, "a", T0, actor="t", org_id=org.id, org_admin=True)
    member = accounts.create_user(store, "m", T0, actor="t", org_id=org.id)
    _, token = accounts.create_api_key(store, admin.id, "laptop", T0, actor="t")
    accounts.create_api_key(store, member.id, "ci", T0, actor="t")
    with serving(create_app(store, clock=lambda: T0)) as base, _signed_in(base, token.reveal()) as client:
        page = client.get("/ui/org")
        assert page.status_code == 200 and "laptop" in page.text and "ci" in page.text and "Not verified" in page.text
        csrf = _csrf(page.text)
        assert "not available on plan team" in page.text  # ZDR: no switch where the plan does not allow it
        dpp = client.post("/ui/org/switches", data={"switch": "dpp", "enabled": "on", "csrf": csrf},
                          follow_redirects=True)  # fmt: skip
        assert 'id="dpp-state">on' in dpp.text
        zdr = client.post("/ui/org/switches", data={"switch": "zdr", "enabled": "on", "csrf": csrf},
                          follow_redirects=True)  # fmt: skip
        assert "zero data retention is not available on plan" in zdr.text  # the policy's own words
        verified = client.post("/ui/org/verify", data={"csrf": csrf}, follow_redirects=True)
        assert "audit chain intact" in verified.text and "last verified checkpoint" in verified.text
        added = client.post("/ui/org/members", data={"name": "zoe", "csrf": csrf}, follow_redirects=True)
        assert "member zoe added" in added.text
        # T2: an admin never holds a member's credential (it would read the member's content)
        before = {k.id for k in accounts.list_api_keys(store, member.id)}
        refused = client.post(f"/ui/org/members/{member.id}/tokens", data={"name": "laptop2", "csrf": csrf},
                              follow_redirects=True)  # fmt: skip
        assert "never holds a member" in refused.text and "rf_" not in refused.text.split("never holds")[0][-200:]
        assert {k.id for k in accounts.list_api_keys(store, member.id)} == before
        made = client.post(f"/ui/org/members/{admin.id}/tokens", data={"name": "laptop2", "csrf": csrf})
        assert made.status_code == 200 and made.headers["cache-control"] == "no-store"
        shown = re.search(r'id="new-token">(rf_[^<]+)<', made.text)
        assert shown and accounts.authenticate(store, shown[1])[0].id == admin.id  # their own, and it works
        [member_key] = accounts.list_api_keys(store, member.id)
        client.post(f"/ui/org/members/{member.id}/tokens/{member_key.id}/revoke", data={"csrf": csrf})
        assert accounts.list_api_keys(store, member.id)[0].revoked_at is not None  # offboarding: allowed
        outsider = accounts.create_user(store, "x", T0, actor="t", plan="pro")
        foreign = client.post(f"/ui/org/members/{outsider.id}/tokens", data={"name": "n", "csrf": csrf},
                              follow_redirects=True)  # fmt: skip
        assert "no member" in foreign.text and not accounts.list_api_keys(store, outsider.id)


@pytest.mark.parametrize(
    ("host", "group"),
    [("api.anthropic.com", "model API"), ("rubygems.org", "package registries"), ("statsig.com", "telemetry"),
     ("github.com", "repository host"), ("example.org", "other"), ("10.0.0.1", "other")],
)  # fmt: skip
def test_destinations_are_grouped_by_the_shipped_lists(host: str, group: str) -> None:
    assert group_of(host, repository_hosts=["github.com"]) == group


def test_the_picture_shows_allowed_and_denied_with_volumes_and_escapes_names() -> None:
    records = [
        {"kind": "egress.connection", "host": "rubygems.org", "decision": "allow", "bytes_up": 100, "bytes_down": 5000},
        {"kind": "egress.connection", "host": "evil.example", "decision": "deny", "rule": "mode:custom"},
        {"kind": "egress.connection", "host": "<script>x</script>", "decision": "deny"},
        {"kind": "gateway.request", "route": "git", "repository": "acme/widgets", "decision": "allow", "bytes_down": 9},
    ]
    found = flows(records)
    assert [(f.group, f.destination, f.allowed, f.denied) for f in found] == [
        ("repository host", "acme/widgets", 1, 0),
        ("package registries", "rubygems.org", 1, 0),
        ("other", "<script>x</script>", 0, 1),
        ("other", "evil.example", 0, 1),
    ]
    svg = render_svg("session s", found, ["network custom: only the allow list"])
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert "evil.example" in svg and "1 denied" in svg and "4.9 KiB down" in svg and "stroke-dasharray" in svg
    assert "network custom" in svg


def test_a_diff_is_rendered_with_line_numbers() -> None:
    text = "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -3,2 +3,2 @@\n same\n-old\n+new\n"
    lines, cut = render_diff(text)
    assert [(line.role, line.old, line.new) for line in lines] == [
        ("file", None, None), ("meta", None, None), ("meta", None, None), ("hunk", None, None),
        ("context", 3, 3), ("del", 4, None), ("add", None, 4),
    ]  # fmt: skip
    assert not cut


def test_the_sessions_list_is_paged_newest_first(store: Store) -> None:
    from datetime import timedelta

    user = accounts.create_user(store, "ana", T0, actor="t", plan="pro")
    _, token = accounts.create_api_key(store, user.id, "t", T0, actor="t")
    made = [content.start_session(store, user.id, T0 + timedelta(minutes=i), repository_id=None).id for i in range(120)]
    with (
        serving(create_app(store, clock=lambda: T0 + timedelta(hours=3))) as base,
        _signed_in(base, token.reveal()) as c,
    ):
        first = c.get("/ui/").text
        assert first.count("<tr data-session=") == 100 and "page 1 of 2 (120 sessions)" in first
        assert made[-1] in first and made[0] not in first
        second = c.get("/ui/", params={"page": 2}).text
        assert second.count("<tr data-session=") == 20 and made[0] in second and "newer" in second
