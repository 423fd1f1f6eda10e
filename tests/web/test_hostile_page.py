"""A2: the console against a hostile web page. No page of ringfence can be framed (X-Frame-Options and CSP
frame-ancestors on every answer); a cross-site sign-in sets no cookie (login CSRF); text in the address is never
shown on a page (messages travel in a signed cookie, `?error=` and `?notice=` are ignored); `/docs` loads nothing
from a third party; the console's pages allow scripts from its own origin only."""

from __future__ import annotations

import re

import httpx
import pytest

from ringfence.server import create_app
from ringfence.store import accounts
from ringfence.store.db import Store
from tests.conftest import T0
from tests.servers import serving

PATHS = ["/ui/", "/ui/login", "/ui/privacy", "/ui/environments", "/ui/org", "/ui/dataflow", "/docs", "/openapi.json",
         "/v1/me", "/healthz", "/nowhere", "/ui/static/console.js"]  # fmt: skip


@pytest.fixture
def signed_in(store: Store):  # type: ignore[no-untyped-def]
    user = accounts.create_user(store, "ana", T0, actor="t", plan="pro")
    _, token = accounts.create_api_key(store, user.id, "t", T0, actor="t")
    with serving(create_app(store, clock=lambda: T0)) as base, httpx.Client(base_url=base) as client:
        assert client.post("/ui/login", data={"token": token.reveal()}).status_code == 303
        client.headers["Authorization"] = f"Bearer {token.reveal()}"
        yield client, token.reveal()


def test_no_answer_can_be_framed(signed_in) -> None:  # type: ignore[no-untyped-def]
    client, _ = signed_in
    for path in PATHS:
        answer = client.get(path)
        assert answer.headers["x-frame-options"] == "DENY", path
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"], path
        assert answer.headers["x-content-type-options"] == "nosniff", path
    page = client.get("/ui/")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "unsafe-inline" not in policy.split("style-src")[0]


@pytest.mark.parametrize(
    "headers",
    [{"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"},
     {"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:1"}],
)  # fmt: skip
def test_a_cross_site_sign_in_sets_no_cookie(store: Store, headers: dict[str, str]) -> None:
    user = accounts.create_user(store, "ana", T0, actor="t", plan="pro")
    _, token = accounts.create_api_key(store, user.id, "t", T0, actor="t")
    with serving(create_app(store, clock=lambda: T0)) as base:
        answer = httpx.post(f"{base}/ui/login", data={"token": token.reveal()}, headers=headers)
        assert answer.status_code == 403 and "set-cookie" not in answer.headers
        same = httpx.post(f"{base}/ui/login", data={"token": token.reveal()},
                          headers={"Origin": base, "Sec-Fetch-Site": "same-origin"})  # fmt: skip
        assert same.status_code == 303 and "rf_console=" in same.headers["set-cookie"]


def test_text_in_the_address_is_never_shown(signed_in) -> None:  # type: ignore[no-untyped-def]
    client, _ = signed_in
    bait = "Your session expired: call 555-0100 to restore it"
    for path in ("/ui/", "/ui/privacy", "/ui/environments", "/ui/login"):
        for name in ("error", "notice", "flash"):
            page = client.get(path, params={name: bait})
            assert bait not in page.text and "555-0100" not in page.text, (path, name)


def test_a_refusal_travels_in_a_signed_cookie_and_a_forged_one_shows_nothing(signed_in) -> None:  # type: ignore[no-untyped-def]
    client, _ = signed_in
    csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', client.get("/ui/environments").text)
    assert csrf
    refused = client.post("/ui/environments", data={"name": "w", "network": "custom", "allow": "*.com",
                                                    "csrf": csrf[1]}, follow_redirects=False)  # fmt: skip
    assert refused.status_code == 303 and refused.headers["location"] == "/ui/environments?flash=error"
    shown = client.get(refused.headers["location"])
    assert "too broad" in shown.text
    assert "too broad" not in client.get("/ui/environments?flash=error").text  # shown once
    client.cookies.set("rf_flash", "eyJ4Ijp9.00", path="/ui")
    assert "eyJ4" not in client.get("/ui/environments?flash=error").text


def test_the_api_docs_load_nothing_from_a_third_party(signed_in) -> None:  # type: ignore[no-untyped-def]
    client, _ = signed_in
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    sources = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
    assert sources and all(s.startswith("/") for s in sources), sources
    for source in sources:
        assert client.get(source).status_code == 200, source
    assert "default-src 'self'" in docs.headers["content-security-policy"]
