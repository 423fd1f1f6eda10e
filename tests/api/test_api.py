"""The REST API through a real server on loopback: auth, who may change what, clear errors, same policy code."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from ringfence.api.app import create_app
from ringfence.policy import explain
from ringfence.store import accounts
from ringfence.store.db import Store
from tests.conftest import T0
from tests.policy.test_scenario import POLICY_MD_EXAMPLE
from tests.servers import serving


@dataclass
class Api:
    base: str
    admin: str

    def call(self, method: str, path: str, token: str | None = None, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.request(method, self.base + path, headers=headers, timeout=10, **kwargs)

    def user(self, **body) -> tuple[str, str]:
        made = self.call("POST", "/v1/users", self.admin, json={"name": "u", **body})
        assert made.status_code == 201, made.text
        token = self.call("POST", f"/v1/users/{made.json()['id']}/api-keys", self.admin, json={"name": "t"})
        assert token.status_code == 201, token.text
        return made.json()["id"], token.json()["token"]

    def org(self, plan: str) -> tuple[str, str, str]:
        org = self.call("POST", "/v1/organizations", self.admin, json={"name": "acme", "plan": plan})
        assert org.status_code == 201, org.text
        admin_id, admin_token = self.user(org_id=org.json()["id"], org_admin=True)
        return org.json()["id"], admin_id, admin_token


@pytest.fixture
def api(store: Store) -> Iterator[Api]:
    admin = accounts.create_user(store, "admin", T0, actor="test", server_admin=True)
    _, token = accounts.create_api_key(store, admin.id, "admin", T0, actor="test")
    with serving(create_app(store)) as base:
        yield Api(base, token.reveal())


def test_the_printed_address_leads_somewhere_useful(api: Api) -> None:
    answer = httpx.get(api.base + "/", follow_redirects=True)
    assert answer.status_code == 200 and "swagger" in answer.text.lower()


def test_openapi_schema_is_served(api: Api) -> None:
    schema = api.call("GET", "/openapi.json").json()
    assert schema["info"]["title"] == "ringfence"
    for path in (
        "/v1/organizations",
        "/v1/users/{user_id}/settings/training",
        "/v1/policy/explain",
        "/v1/audit/verify",
        "/v1/organizations/{org_id}/settings",
        "/v1/users/{user_id}/repositories",
    ):
        assert path in schema["paths"]


def test_every_operation_documents_its_refusals_and_their_body(api: Api) -> None:
    """Clients generated from the schema know the refusals and their body (`{"error": {"code", "message"}}`),
    not FastAPI's default validation shape, which this server never sends."""
    schema = api.call("GET", "/openapi.json").json()
    assert schema["components"]["schemas"]["ErrorBody"]["required"] == ["error"]
    operations = [
        (path, method, operation)
        for path, methods in schema["paths"].items()
        if path.startswith("/v1/")
        for method, operation in methods.items()
    ]
    assert len(operations) > 30
    for path, method, operation in operations:
        for status in ("401", "403", "404", "409", "422"):
            documented = operation["responses"].get(status)
            assert documented is not None, f"{method.upper()} {path} does not document {status}"
            body = documented["content"]["application/json"]["schema"]
            assert body == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status, body)
        if path.startswith("/v1/sessions"):
            assert {"502", "503"} <= set(operation["responses"]), (method, path)


@pytest.mark.parametrize("header", [None, "Basic abc", "Bearer", "Bearer rf_0000000000000000_" + "A" * 43])
def test_requests_without_a_valid_token_are_refused(api: Api, header: str | None) -> None:
    answer = httpx.get(api.base + "/v1/me", headers={"Authorization": header} if header else {})
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.json()["error"]["code"] == "unauthorized"


def test_a_consumer_changes_only_their_own_training_setting(api: Api) -> None:
    alice, alice_token = api.user(plan="pro")
    bob, bob_token = api.user(plan="max")
    assert (
        api.call("PUT", f"/v1/users/{alice}/settings/training", alice_token, json={"enabled": True}).json()["enabled"]
        is True
    )
    answer = api.call("PUT", f"/v1/users/{alice}/settings/training", bob_token, json={"enabled": False})
    assert answer.status_code == 404  # bob cannot even see alice
    answer = api.call("PUT", f"/v1/users/{alice}/settings/training", api.admin, json={"enabled": False})
    assert answer.status_code == 403  # nor can the server admin choose for her
    api.call("PUT", f"/v1/users/{alice}/settings/training", alice_token, json={"enabled": False})
    history = api.call("GET", f"/v1/users/{alice}/settings/training", alice_token).json()
    assert history["enabled"] is False
    assert [h["value"] for h in history["history"]] == [True, False]
    assert api.call("GET", f"/v1/users/{bob}/settings/training", bob_token).json()["history"] == []


def test_only_the_orgs_own_admin_switches_dpp_and_zdr(api: Api) -> None:
    org, _, org_admin = api.org("enterprise")
    other_org, _, other_admin = api.org("team")
    _member, member_token = api.user(org_id=org)
    path = f"/v1/organizations/{org}/settings"
    assert api.call("PUT", path, member_token, json={"dpp": True}).status_code == 403
    assert api.call("PUT", path, other_admin, json={"dpp": True}).status_code == 404
    assert api.call("PUT", path, api.admin, json={"dpp": True}).status_code == 403
    changed = api.call("PUT", path, org_admin, json={"dpp": True, "zdr": True})
    assert changed.status_code == 200 and changed.json()["dpp"] and changed.json()["zdr"]
    history = api.call("GET", f"/v1/organizations/{org}/settings/history", member_token).json()
    assert [(h["setting"], h["value"]) for h in history] == [("dpp", True), ("zdr", True)]
    assert (
        api.call("PUT", f"/v1/organizations/{other_org}/settings", other_admin, json={"zdr": True}).json()["error"][
            "message"
        ]
        == "zero data retention is not available on plan 'team'"
    )


@pytest.mark.parametrize("plan", ["bedrock", "vertex", "foundry", "gov"])
def test_dpp_on_third_party_and_gov_plans_is_a_clear_422_and_changes_nothing(api: Api, plan: str) -> None:
    org, _, org_admin = api.org(plan)
    answer = api.call("PUT", f"/v1/organizations/{org}/settings", org_admin, json={"dpp": True})
    assert answer.status_code == 422
    assert answer.json()["error"] == {
        "code": "policy_refused",
        "message": f"plan '{plan}' cannot join the Development Partner Program",
    }
    assert api.call("GET", f"/v1/organizations/{org}", org_admin).json()["dpp"] is False


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/v1/organizations", {"name": "x", "plan": "platinum"}, "unknown plan 'platinum'"),
        ("/v1/organizations", {"name": "x", "plan": "pro"}, "consumer plan"),
        ("/v1/organizations", {"name": "x", "plan": "team", "colour": "red"}, "colour: Extra inputs"),
        ("/v1/organizations", {"plan": "team"}, "name: Field required"),
        ("/v1/users", {"name": "x", "plan": "team"}, "plan 'team' is commercial"),
    ],
)
def test_bad_input_names_what_was_wrong(api: Api, path: str, body: dict, message: str) -> None:
    answer = api.call("POST", path, api.admin, json=body)
    assert answer.status_code == 422
    assert message in answer.json()["error"]["message"]


def test_zdr_keys_and_repositories(api: Api) -> None:
    user, token = api.user(plan="free")
    answer = api.call("POST", f"/v1/users/{user}/api-keys", token, json={"zdr": True})
    assert answer.status_code == 422 and "zero data retention API keys" in answer.json()["error"]["message"]
    repo = api.call("POST", f"/v1/users/{user}/repositories", token, json={"url": "https://github.com/a/b"})
    assert repo.status_code == 201 and repo.json()["url"] == "https://github.com/a/b.git"
    dup = api.call("POST", f"/v1/users/{user}/repositories", token, json={"url": "https://github.com/a/b.git"})
    assert dup.status_code == 409
    bad = api.call("POST", f"/v1/users/{user}/repositories", token, json={"url": "git@github.com:a/b"})
    assert bad.status_code == 422
    listed = api.call("GET", f"/v1/users/{user}/repositories", token).json()
    assert [r["url"] for r in listed] == ["https://github.com/a/b.git"]
    assert api.call("DELETE", f"/v1/users/{user}/repositories/{repo.json()['id']}", token).status_code == 204
    keys = api.call("GET", f"/v1/users/{user}/api-keys", token).json()
    assert all("token" not in k and "secret" not in json.dumps(k) for k in keys)


def test_policy_explain_over_http_is_the_cli_code_path(api: Api, rules) -> None:
    _, token = api.user(plan="pro")
    answer = api.call("POST", "/v1/policy/explain", token, content=json.dumps(POLICY_MD_EXAMPLE))
    assert answer.status_code == 200
    assert answer.json() == explain(rules, json.dumps(POLICY_MD_EXAMPLE))
    bad = dict(
        POLICY_MD_EXAMPLE,
        events=[
            *POLICY_MD_EXAMPLE["events"],
            {"seq": 1, "at": "2026-01-06T00:00:00Z", "account": "u1", "type": "consent", "value": False},
        ],
    )
    refused = api.call("POST", "/v1/policy/explain", token, content=json.dumps(bad))
    assert refused.status_code == 422 and "duplicate seq" in refused.json()["error"]["message"]


def test_audit_verify_is_for_server_admins(api: Api) -> None:
    _, token = api.user(plan="pro")
    assert api.call("GET", "/v1/audit/verify", token).status_code == 403
    result = api.call("GET", "/v1/audit/verify", api.admin).json()
    assert result["ok"] is True and result["records"] >= 3


def test_switches_apply_together_or_not_at_all(api: Api) -> None:
    org, _, org_admin = api.org("team")
    answer = api.call("PUT", f"/v1/organizations/{org}/settings", org_admin, json={"dpp": True, "zdr": True})
    assert answer.status_code == 422
    assert answer.json()["error"]["message"] == "zero data retention is not available on plan 'team'"
    after = api.call("GET", f"/v1/organizations/{org}", org_admin).json()
    assert (after["dpp"], after["zdr"]) == (False, False)
    assert api.call("GET", f"/v1/organizations/{org}/settings/history", org_admin).json() == []


def test_routing_refusals_and_unreadable_bodies_answer_in_the_error_shape(api: Api) -> None:
    def error(answer: httpx.Response, status: int, code: str) -> str:
        assert answer.status_code == status, answer.text
        assert answer.json()["error"]["code"] == code, answer.text
        return str(answer.json()["error"]["message"])

    assert "/v1/nothing" in error(api.call("GET", "/v1/nothing", api.admin), 404, "not_found")
    wrong = api.call("PATCH", "/v1/organizations", api.admin)
    assert "use POST" in error(wrong, 405, "method_not_allowed") and wrong.headers["allow"] == "POST"
    user_id, token = api.user(plan="pro")
    both = api.call("PUT", f"/v1/users/{user_id}/repositories", token)
    assert both.status_code == 405 and both.headers["allow"] == "GET, HEAD, POST"  # every route on the path
    as_json = {"Content-Type": "application/json", "Authorization": f"Bearer {api.admin}"}
    not_text = httpx.post(f"{api.base}/v1/organizations", content=b"\x80", headers=as_json)
    assert "not JSON text in UTF-8" in error(not_text, 422, "invalid")
    cut = httpx.post(f"{api.base}/v1/organizations", content=b'{"name": "x", "plan": "team"', headers=as_json)
    assert "body: not valid JSON at character 28" in error(cut, 422, "invalid")
    page = httpx.get(f"{api.base}/ui/nothing-here")
    assert page.status_code == 404 and "error" not in page.json()  # not an API path: the framework's own answer


@pytest.mark.parametrize("value", [0, 1, "false", "no", "off", None])
def test_consent_and_settings_switches_take_only_true_or_false(api: Api, value: object) -> None:
    user_id, token = api.user(plan="pro")
    before = api.call("GET", f"/v1/users/{user_id}/settings/training", token).json()
    answer = api.call("PUT", f"/v1/users/{user_id}/settings/training", token, json={"enabled": value})
    assert answer.status_code == 422 and "enabled" in answer.text, answer.text
    assert api.call("GET", f"/v1/users/{user_id}/settings/training", token).json() == before  # nothing recorded
    org_id, _, admin_token = api.org("enterprise")
    refused = api.call("PUT", f"/v1/organizations/{org_id}/settings", admin_token, json={"zdr": value or 0})
    assert refused.status_code == 422 and "zdr" in refused.text, refused.text
    assert api.call("GET", f"/v1/organizations/{org_id}", admin_token).json()["zdr"] is False
