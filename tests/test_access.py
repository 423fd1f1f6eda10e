"""T2, the authorization table: for every route of the API and the console that takes an id, what each role gets.
One table, read by both front ends: an action is allowed for exactly the roles the table names, through the API
(a 2xx) and through the console wherever the console offers it (a page or a redirect with a notice); every other
role is refused (403 or 404 from the API; a refusal page or a redirect with an error from the console), and a
refused request changes nothing.

Roles, around one session of `owner` (a plain member of organization A, with a prompt kept):
owner; member (another plain member of A); admin (an admin of A); other_admin (an admin of organization B);
consumer (a pro user); server_admin.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from ringfence import access
from ringfence.policy import PolicyRules
from ringfence.server import create_app
from ringfence.store import accounts, content, environments, github_apps, providers
from ringfence.store.crypto import Secret
from ringfence.store.db import Store, open_store
from ringfence.store.models import User
from tests.conftest import T0
from tests.gateway.test_github_adapter import PEM
from tests.servers import serving

ROLES = ("owner", "member", "admin", "other_admin", "consumer", "server_admin")
SECRET_PROMPT = "owner's private prompt 7731"
LISTED = "https://listed.example/v1"


@dataclass
class World:
    base: str
    store: Store
    users: dict[str, User]
    tokens: dict[str, str]
    org_a: str
    org_b: str
    session: str

    def fresh_key(self) -> str:
        key, _ = accounts.create_api_key(self.store, self.users["owner"].id, "spare", T0, actor="t")
        return key.id

    def fresh_session(self) -> str:
        """A session of the owner's for an action that ends it (the shared one stays for the others)."""
        return content.start_session(self.store, self.users["owner"].id, T0, repository_id=None).id

    def credentialed_repository(self) -> str:
        from ringfence.store import credentials
        from ringfence.store.crypto import Secret

        repo = self.fresh_repository()
        credentials.set_credential(self.store, repo, "bearer", Secret("t"), T0, actor="t")
        return repo

    def fresh_provider(self) -> str:
        """A provider of organization A's for an action that deletes it."""
        self.providers = getattr(self, "providers", 0) + 1
        name = f"p{self.providers}"
        providers.set_provider(self.store, self.org_a, name, "openai", "https://llm.example/v1", Secret("k"), T0,
                               actor="t")  # fmt: skip
        return name

    def listed_provider(self, page: str) -> str:
        """`page`, once organization A has a provider at LISTED for it to show."""
        providers.set_provider(self.store, self.org_a, "listed", "openai", LISTED, Secret("k"), T0, actor="t")
        return page

    def with_github_app(self) -> str:
        """Organization A, once it has a GitHub App (for an action that deletes it)."""
        github_apps.set_github_app(self.store, self.org_a, "1", Secret(PEM), "https://api.github.com", T0, actor="t")
        return self.org_a

    def fresh_repository(self) -> str:
        self.repos = getattr(self, "repos", 0) + 1
        url = f"https://git.example/owner/r{self.repos}"
        return accounts.connect_repository(self.store, self.users["owner"].id, url, T0, actor="t").id


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, rules: PolicyRules) -> Iterator[World]:
    data = tmp_path_factory.mktemp("authz")
    store = open_store(f"sqlite:///{data / 'ringfence.db'}", data / "master.key", rules=rules)
    org_a = accounts.create_organization(store, "a", "team", T0, actor="t")
    org_b = accounts.create_organization(store, "b", "team", T0, actor="t")
    users = {
        "owner": accounts.create_user(store, "owner", T0, actor="t", org_id=org_a.id),
        "member": accounts.create_user(store, "member", T0, actor="t", org_id=org_a.id),
        "admin": accounts.create_user(store, "admin", T0, actor="t", org_id=org_a.id, org_admin=True),
        "other_admin": accounts.create_user(store, "oa", T0, actor="t", org_id=org_b.id, org_admin=True),
        "consumer": accounts.create_user(store, "c", T0, actor="t", plan="pro"),
        "server_admin": accounts.create_user(store, "root", T0, actor="t", plan="pro", server_admin=True),
    }
    tokens = {role: accounts.create_api_key(store, u.id, "t", T0, actor="t")[1].reveal() for role, u in users.items()}
    session = content.start_session(store, users["owner"].id, T0, repository_id=None)
    content.put_content(store, session.id, "prompt", SECRET_PROMPT, T0, turn=1)
    environments.create_environment(store, org_a.id, "shared", {"network": "none"}, T0, actor="t")
    with serving(create_app(store, clock=lambda: T0)) as base:
        yield World(base, store, users, tokens, org_a.id, org_b.id, session.id)
    store.engine.dispose()


@dataclass(frozen=True)
class Action:
    """One thing to do to the owner's things, as each front end asks for it."""

    name: str
    allowed: frozenset[str]
    api: Callable[[World], tuple[str, str, dict[str, object] | None]] | None  # (method, path, json)
    console: Callable[[World], tuple[str, str, dict[str, str] | None]] | None  # (method, path, form)
    console_offers: frozenset[str] = frozenset(ROLES)  # who the console shows this to at all
    # A console page with no id of its own (it shows the viewer's organization): what it must show when allowed
    # and never show otherwise.
    console_shows: Callable[[World], str] | None = None


def _ids(w: World) -> dict[str, str]:
    return {"u": w.users["owner"].id, "s": w.session, "a": w.org_a}


ACTIONS = [
    Action("see the user", frozenset({"owner", "admin", "server_admin"}),
           lambda w: ("GET", f"/v1/users/{_ids(w)['u']}", None), None),
    Action("list the user's tokens (metadata)", frozenset({"owner", "admin", "server_admin"}),
           lambda w: ("GET", f"/v1/users/{_ids(w)['u']}/api-keys", None), None),
    Action("mint a token for the user", frozenset({"owner", "server_admin"}),
           lambda w: ("POST", f"/v1/users/{_ids(w)['u']}/api-keys", {"name": "x"}),
           lambda w: ("POST", f"/ui/org/members/{_ids(w)['u']}/tokens", {"name": "x"}),
           console_offers=frozenset({"admin", "other_admin"})),
    Action("revoke a token of the user", frozenset({"owner", "admin", "server_admin"}),
           lambda w: ("DELETE", f"/v1/users/{_ids(w)['u']}/api-keys/{w.fresh_key()}", None),
           lambda w: ("POST", f"/ui/org/members/{_ids(w)['u']}/tokens/{w.fresh_key()}/revoke", {}),
           console_offers=frozenset({"admin", "other_admin"})),
    Action("read the training setting", frozenset({"owner"}),
           lambda w: ("GET", f"/v1/users/{_ids(w)['u']}/settings/training", None), None),
    Action("list the user's repositories", frozenset({"owner"}),
           lambda w: ("GET", f"/v1/users/{_ids(w)['u']}/repositories", None), None),
    Action("see the session", frozenset({"owner"}),
           lambda w: ("GET", f"/v1/sessions/{_ids(w)['s']}", None),
           lambda w: ("GET", f"/ui/sessions/{_ids(w)['s']}", None)),
    Action("read the session's content", frozenset({"owner"}),
           lambda w: ("GET", f"/v1/sessions/{_ids(w)['s']}/content", None),
           lambda w: ("GET", f"/ui/sessions/{_ids(w)['s']}", None)),
    Action("see what left the session", frozenset({"owner"}),
           lambda w: ("GET", f"/v1/sessions/{_ids(w)['s']}/egress", None),
           lambda w: ("GET", f"/ui/dataflow.svg?session={_ids(w)['s']}", None)),
    Action("rate the session", frozenset({"owner"}),
           lambda w: ("POST", f"/v1/sessions/{_ids(w)['s']}/rating", {"value": 2}),
           lambda w: ("POST", f"/ui/sessions/{_ids(w)['s']}/rating", {"value": "2"})),
    Action("list the organization's sessions (metadata)", frozenset({"admin"}),
           lambda w: ("GET", f"/v1/organizations/{_ids(w)['a']}/sessions", None),
           lambda w: ("GET", "/ui/org", None), console_shows=lambda w: w.session),
    Action("see the organization", frozenset({"owner", "member", "admin", "server_admin"}),
           lambda w: ("GET", f"/v1/organizations/{_ids(w)['a']}", None), None),
    Action("read the organization's switch history", frozenset({"owner", "member", "admin", "server_admin"}),
           lambda w: ("GET", f"/v1/organizations/{_ids(w)['a']}/settings/history", None), None),
    Action("change the organization's switches", frozenset({"admin"}),
           lambda w: ("PUT", f"/v1/organizations/{_ids(w)['a']}/settings", {"dpp": False}), None),
    Action("send feedback on the session", frozenset({"owner"}),
           lambda w: ("POST", f"/v1/sessions/{_ids(w)['s']}/feedback", {"comment": "x"}),
           lambda w: ("POST", f"/ui/sessions/{_ids(w)['s']}/feedback", {"comment": "x"})),
    Action("delete the session", frozenset({"owner"}),
           lambda w: ("DELETE", f"/v1/sessions/{w.fresh_session()}", None),
           lambda w: ("POST", f"/ui/sessions/{w.fresh_session()}/delete", {"confirm": "yes"})),
    Action("disconnect the user's repository", frozenset({"owner"}),
           lambda w: ("DELETE", f"/v1/users/{_ids(w)['u']}/repositories/{w.fresh_repository()}", None), None),
    Action("store the repository's credential", frozenset({"owner"}),
           lambda w: ("PUT", f"/v1/users/{_ids(w)['u']}/repositories/{w.fresh_repository()}/credential",
                      {"kind": "bearer", "token": "t"}),
           lambda w: ("POST", f"/ui/connections/repositories/{w.fresh_repository()}/token", {"token": "t"})),
    Action("delete the repository's credential", frozenset({"owner"}),
           lambda w: ("DELETE", f"/v1/users/{_ids(w)['u']}/repositories/{w.credentialed_repository()}/credential",
                      None), None),
    # The console's provider forms act on the viewer's own account (no id in the path): setting one is in
    # tests/web/test_connections.py; deleting organization A's by name is refused to anyone else's account.
    Action("set the organization's model provider", frozenset({"admin"}),
           lambda w: ("PUT", f"/v1/organizations/{_ids(w)['a']}/providers/anthropic",
                      {"base_url": "https://llm.example", "api_key": "k"}), None),
    Action("delete the organization's model provider", frozenset({"admin"}),
           lambda w: ("DELETE", f"/v1/organizations/{_ids(w)['a']}/providers/{w.fresh_provider()}", None),
           lambda w: ("POST", f"/ui/connections/providers/{w.fresh_provider()}/delete", {"confirm": "yes"}),
           console_offers=frozenset({"owner", "member", "admin"})),
    Action("list the organization's model providers", frozenset({"owner", "member", "admin", "server_admin"}),
           lambda w: ("GET", f"/v1/organizations/{_ids(w)['a']}/providers", None),
           lambda w: ("GET", w.listed_provider("/ui/connections"), None),
           console_offers=frozenset({"owner", "member", "admin"}), console_shows=lambda w: LISTED),
    Action("set the organization's GitHub App", frozenset({"admin"}),
           lambda w: ("PUT", f"/v1/organizations/{_ids(w)['a']}/github-app", {"app_id": "1", "private_key": PEM}),
           None),
    Action("see the organization's GitHub App", frozenset({"owner", "member", "admin", "server_admin"}),
           lambda w: ("GET", f"/v1/organizations/{w.with_github_app()}/github-app", None), None),
    Action("delete the organization's GitHub App", frozenset({"admin"}),
           lambda w: ("DELETE", f"/v1/organizations/{w.with_github_app()}/github-app", None), None),
    Action("see the organization's environment", frozenset({"owner", "member", "admin"}),
           lambda w: ("GET", "/v1/environments/shared", None), None),
    Action("replace the organization's environment", frozenset({"admin"}),
           lambda w: ("PUT", "/v1/environments/shared", {"network": "none"}), None),
]  # fmt: skip


def _cell_ids() -> list[tuple[Action, str]]:
    return [(action, role) for action in ACTIONS for role in ROLES]


@pytest.mark.parametrize(("action", "role"), _cell_ids(), ids=[f"{a.name}-{r}" for a, r in _cell_ids()])
def test_the_api_answers_each_role_as_the_table_says(world: World, action: Action, role: str) -> None:
    assert action.api is not None
    method, path, body = action.api(world)
    answer = httpx.request(
        method, world.base + path, json=body, headers={"Authorization": f"Bearer {world.tokens[role]}"}
    )
    if role in action.allowed:
        assert answer.status_code < 300, (action.name, role, answer.text)
    else:
        assert answer.status_code in (403, 404), (action.name, role, answer.status_code, answer.text)
        assert SECRET_PROMPT not in answer.text


def _console_cells() -> list[tuple[Action, str]]:
    return [(a, r) for a, r in _cell_ids() if a.console is not None]


@pytest.mark.parametrize(("action", "role"), _console_cells(), ids=[f"{a.name}-{r}" for a, r in _console_cells()])
def test_the_console_answers_each_role_as_the_same_table_says(world: World, action: Action, role: str) -> None:
    assert action.console is not None
    with httpx.Client(base_url=world.base, follow_redirects=False) as client:
        assert client.post("/ui/login", data={"token": world.tokens[role]}).status_code == 303
        csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', client.get("/ui/").text)
        assert csrf
        keys_before = len(accounts.list_api_keys(world.store, world.users["owner"].id))
        method, path, form = action.console(world)
        data = {**(form or {}), "csrf": csrf[1]}
        answer = client.get(path) if method == "GET" else client.post(path, data=data)
        refused = answer.status_code in (403, 404) or (
            answer.status_code == 303 and "flash=error" in answer.headers.get("location", "")
        )
        if action.console_shows is not None and answer.status_code == 200:
            refused = action.console_shows(world) not in answer.text
        if role in action.allowed and role in action.console_offers:
            assert answer.status_code in (200, 303) and not refused, (action.name, role, answer.status_code)
        else:
            assert refused, (action.name, role, answer.status_code, answer.headers.get("location"))
            assert SECRET_PROMPT not in answer.text
            if action.name.startswith("mint"):  # a refused mint made no token
                assert len(accounts.list_api_keys(world.store, world.users["owner"].id)) == keys_before


def test_the_rules_are_the_access_modules_alone() -> None:
    """Neither front end carries a copy of a rule: no route compares a row's user with the caller by itself."""
    from pathlib import Path

    import ringfence

    root = Path(ringfence.__file__).parent
    for front in ("api", "web"):
        for source in (root / front).rglob("*.py"):
            text = source.read_text()
            assert ".user_id != " not in text and ".org_admin and" not in text, source
    assert access.check_mint_key is not None
