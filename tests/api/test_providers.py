"""Model providers through the API (issue 15): an organization's, set by its admins; a consumer's own. The key
is sealed, audited without the secret and never returned; bad input is a 422 naming the field, and nothing stored
before changes; a base URL the server may not dial is refused when it is saved."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest

from ringfence.api.app import create_app
from ringfence.net.addresses import AddressPolicy
from ringfence.net.dial import Dialer
from ringfence.net.resolve import CachingResolver, StaticResolver
from ringfence.store import accounts, providers
from ringfence.store.db import Store
from tests.conftest import T0
from tests.servers import serving
from tests.store.helpers import files_containing

KEY = "sk-ant-ORG-PROVIDER-KEY-778899"
ALLOW_LOOPBACK = Dialer(AddressPolicy.parse(["127.0.0.1/32"]), CachingResolver(StaticResolver({})))


def _people(store: Store) -> dict[str, tuple[str, dict[str, str]]]:
    org = accounts.create_organization(store, "acme", "team", T0, actor="t")
    other = accounts.create_organization(store, "beta", "team", T0, actor="t")
    made = {
        "admin": accounts.create_user(store, "a", T0, actor="t", org_id=org.id, org_admin=True),
        "member": accounts.create_user(store, "m", T0, actor="t", org_id=org.id),
        "other_admin": accounts.create_user(store, "oa", T0, actor="t", org_id=other.id, org_admin=True),
        "consumer": accounts.create_user(store, "c", T0, actor="t", plan="pro"),
    }
    out = {"org": (org.id, {})}
    for role, user in made.items():
        token = accounts.create_api_key(store, user.id, "t", T0, actor="t")[1].reveal()
        out[role] = (user.id, {"Authorization": f"Bearer {token}"})
    return out


def test_an_org_admin_sets_a_provider_members_see_it_without_its_key(store: Store, tmp_path: Path) -> None:
    people = _people(store)
    org = people["org"][0]
    path = f"/v1/organizations/{org}/providers/anthropic"
    body = {"base_url": "http://127.0.0.1:9/anthropic", "api_key": KEY}
    with serving(create_app(store, clock=lambda: T0, dialer=ALLOW_LOOPBACK)) as base:
        for role in ("member", "other_admin", "consumer"):
            refused = httpx.put(base + path, json=body, headers=people[role][1])
            assert refused.status_code in (403, 404), (role, refused.text)
        made = httpx.put(base + path, json=body, headers=people["admin"][1])
        assert made.status_code == 200, made.text
        assert made.json() == {"name": "anthropic", "kind": "anthropic", "base_url": body["base_url"],
                               "updated_at": "2026-01-01T00:00:00Z"}  # fmt: skip
        listed = httpx.get(f"{base}/v1/organizations/{org}/providers", headers=people["member"][1])
        assert listed.status_code == 200 and [p["name"] for p in listed.json()] == ["anthropic"]
        assert (
            httpx.get(f"{base}/v1/organizations/{org}/providers", headers=people["other_admin"][1]).status_code == 404
        )
        answers = [made.text, listed.text]
        consumer_id, consumer = people["consumer"]
        mine = httpx.put(f"{base}/v1/users/{consumer_id}/providers/llm", headers=consumer,
                         json={"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "sk-own"})  # fmt: skip
        assert mine.status_code == 200 and mine.json()["kind"] == "openai"
        member_id, member = people["member"]
        in_org = httpx.put(f"{base}/v1/users/{member_id}/providers/llm", headers=member,
                           json={"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "x"})  # fmt: skip
        assert in_org.status_code == 422 and "its admins set" in in_org.text
        assert httpx.delete(base + path, headers=people["member"][1]).status_code == 403
        assert httpx.delete(base + path, headers=people["admin"][1]).status_code == 204
        assert httpx.delete(base + path, headers=people["admin"][1]).status_code == 404
    assert all(KEY not in answer for answer in answers)
    exported = io.StringIO()
    store.audit.export(store.engine, exported)
    assert "provider.set" in exported.getvalue() and "provider.deleted" in exported.getvalue()
    assert KEY not in exported.getvalue()
    assert files_containing(tmp_path, KEY.encode()) == []


@pytest.mark.parametrize(
    ("name", "body", "says"),
    [
        ("anthropic", {"kind": "gemini", "base_url": "https://x.example", "api_key": "k"}, "kind"),
        ("anthropic", {"base_url": "ftp://x.example", "api_key": "k"}, "plain http(s) URL"),
        ("anthropic", {"base_url": "https://u:p@x.example", "api_key": "k"}, "plain http(s) URL"),
        ("anthropic", {"base_url": "https://x.example", "api_key": ""}, "api_key"),
        ("anthropic", {"base_url": "https://x.example"}, "api_key"),
        ("mine", {"base_url": "https://x.example", "api_key": "k"}, "give its kind"),
        ("Bad-Name", {"kind": "openai", "base_url": "https://x.example", "api_key": "k"}, "provider name"),
        ("anthropic", {"base_url": "http://169.254.169.254/", "api_key": "k"}, "does not dial it"),
        ("anthropic", {"base_url": "http://127.0.0.1:8600/", "api_key": "k"}, "does not dial it"),
        ("anthropic", {"base_url": "https://x.example", "api_key": "k", "extra": 1}, "extra"),
    ],
)
def test_bad_input_names_the_field_and_changes_nothing(store: Store, name: str, body: dict, says: str) -> None:
    people = _people(store)
    org = people["org"][0]
    providers.set_provider(store, org, "anthropic", None, "https://before.example", _secret("old"), T0, actor="t")
    with serving(create_app(store, clock=lambda: T0)) as base:  # public addresses only
        answer = httpx.put(f"{base}/v1/organizations/{org}/providers/{name}", json=body, headers=people["admin"][1])
    assert answer.status_code == 422 and says.lower() in answer.text.lower(), answer.text
    assert [(p.name, p.base_url) for p in providers.list_providers(store, org)] == [
        ("anthropic", "https://before.example")
    ]
    [(_, key)] = providers.load_providers(store, org)
    assert key.reveal() == "old"


def _secret(value: str):  # type: ignore[no-untyped-def]
    from ringfence.store.crypto import Secret

    return Secret(value)
