"""Organizations, users, switches, API keys and repositories, with the refusals the policy demands."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import select

from ringfence.audit.table import audit_records
from ringfence.policy import PolicyError
from ringfence.store import accounts
from ringfence.store.db import Store
from ringfence.store.errors import Conflict, Invalid, NotFound
from ringfence.store.models import ApiKey, Organization, PolicyEvent
from tests.conftest import T0
from tests.store.helpers import consumer, files_containing, org_with_member


@pytest.mark.parametrize("plan", ["bedrock", "vertex", "foundry", "gov"])
def test_dpp_is_refused_on_plans_that_cannot_join_and_nothing_changes(store: Store, plan: str) -> None:
    org, admin = org_with_member(store, plan)
    with pytest.raises(PolicyError, match=f"plan '{plan}' cannot join the Development Partner Program"):
        accounts.set_org_switch(store, org.id, "dpp", True, T0, actor=admin.id)
    with store.read() as db:
        assert db.get(Organization, org.id).dpp is False
        assert db.scalars(select(PolicyEvent).where(PolicyEvent.account_id == org.id)).all() == []


@pytest.mark.parametrize(
    ("plan", "allowed"), [("team", False), ("enterprise", True), ("api", True), ("bedrock", False), ("gov", False)]
)
def test_zdr_only_where_the_plan_allows(store: Store, plan: str, allowed: bool) -> None:
    org, admin = org_with_member(store, plan)
    if allowed:
        assert accounts.set_org_switch(store, org.id, "zdr", True, T0, actor=admin.id).zdr
    else:
        with pytest.raises(PolicyError, match="zero data retention is not available"):
            accounts.set_org_switch(store, org.id, "zdr", True, T0, actor=admin.id)


@pytest.mark.parametrize("plan", ["free", "pro", "max"])
def test_consumer_plans_have_no_zdr_keys_and_no_org(store: Store, plan: str) -> None:
    user = consumer(store, plan=plan)
    with pytest.raises(PolicyError, match="zero data retention API keys are not available"):
        accounts.create_api_key(store, user.id, "k", T0, actor=user.id, zdr=True)
    with pytest.raises(Invalid, match="consumer plan; an organization needs a commercial plan"):
        accounts.create_organization(store, "x", plan, T0, actor="t")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"plan": "platinum"}, "unknown plan 'platinum'"),
        ({"plan": "team"}, "plan 'team' is commercial"),
        ({}, "needs a consumer plan"),
        ({"plan": "pro", "org_id": "org_x"}, "not both"),
        ({"plan": "pro", "org_admin": True}, "only a member of an organization can be its admin"),
        ({"org_id": "org_missing"}, "no organization 'org_missing'"),
    ],
)
def test_bad_users_are_refused(store: Store, kwargs: dict, message: str) -> None:
    with pytest.raises((Invalid, NotFound), match=message):
        accounts.create_user(store, "x", T0, actor="t", **kwargs)


def test_unknown_org_plan(store: Store) -> None:
    with pytest.raises(Invalid, match="unknown plan 'mega'"):
        accounts.create_organization(store, "x", "mega", T0, actor="t")


def test_training_setting_keeps_its_full_history(store: Store) -> None:
    user = consumer(store)
    for value in (True, False, True):
        accounts.set_training(store, user.id, value, T0, actor=user.id)
    history = accounts.settings_history(store, user.id)
    assert [(h["seq"], h["value"]) for h in history] == [(1, True), (2, False), (3, True)]
    assert all(h["policy"] == store.rules.stamp for h in history)


def test_members_have_no_personal_training_setting(store: Store) -> None:
    _, member = org_with_member(store, "team")
    with pytest.raises(PolicyError, match="governed by the organization's DPP switch"):
        accounts.set_training(store, member.id, True, T0, actor=member.id)


def test_api_keys_are_stored_only_as_hashes(store: Store, data_dir: Path) -> None:
    user = consumer(store)
    key, token = accounts.create_api_key(store, user.id, "laptop", T0, actor=user.id)
    # Revealed tokens stay out of the assert expressions, so a failure never prints one.
    plain = token.reveal()
    holding = files_containing(data_dir, plain.encode())
    assert holding == []
    with store.read() as db:
        hashed_as_expected = db.get(ApiKey, key.id).secret_sha256 == hashlib.sha256(plain.encode()).hexdigest()
    assert hashed_as_expected
    altered = plain[:-1] + ("B" if plain.endswith("A") else "A")
    accepted = accounts.authenticate(store, plain)
    assert accepted is not None and accepted[0].id == user.id
    rejected_altered = accounts.authenticate(store, altered) is None
    assert rejected_altered
    assert accounts.authenticate(store, "rf_nonsense") is None
    accounts.revoke_api_key(store, user.id, key.id, T0, actor=user.id)
    rejected_revoked = accounts.authenticate(store, plain) is None
    assert rejected_revoked
    with store.read() as db:
        data = b"".join(db.execute(select(audit_records.c.data)).scalars())
    leaked = plain.encode() in data
    assert not leaked


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("https://github.com/acme/app", "https://github.com/acme/app.git"),
        ("https://GitHub.com./acme/app.git/", "https://github.com/acme/app.git"),
        ("http://127.0.0.1:9418/demo/example.git", "http://127.0.0.1:9418/demo/example.git"),
    ],
)
def test_repository_urls_are_canonical(url: str, canonical: str) -> None:
    assert accounts.parse_repository_url(url)[3] == canonical


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("git@github.com:acme/app.git", "must be http"),
        ("ssh://github.com/acme/app", "must be http"),
        ("https://user:pw@github.com/acme/app", "must not carry credentials"),
        ("https://github.com/acme", "exactly OWNER/NAME"),
        ("https://github.com/acme/app/extra", "exactly OWNER/NAME"),
        ("https://github.com/../app", "may hold letters"),
        ("https://github.com/acme/../app", "exactly OWNER/NAME"),
        ("https://github.com/acme/.hidden", "may hold letters"),
        ("https://github.com/acme/a%2Fb", "may hold letters"),
        ("https://github.com/acme/app?x=1", "query or fragment"),
        ("https://github.com/acme/app b", "without spaces"),
    ],
)
def test_bad_repository_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        accounts.parse_repository_url(url)


def test_repositories_are_per_user_and_unique(store: Store) -> None:
    alice, bob = consumer(store), consumer(store)
    repo = accounts.connect_repository(store, alice.id, "https://github.com/acme/app", T0, actor=alice.id)
    with pytest.raises(Conflict, match="already connected"):
        accounts.connect_repository(store, alice.id, "https://github.com/acme/app.git", T0, actor=alice.id)
    accounts.connect_repository(store, bob.id, "https://github.com/acme/app", T0, actor=bob.id)
    assert [r.id for r in accounts.list_repositories(store, alice.id)] == [repo.id]
    with pytest.raises(NotFound):
        accounts.disconnect_repository(store, bob.id, repo.id, T0, actor=bob.id)
    accounts.disconnect_repository(store, alice.id, repo.id, T0, actor=alice.id)
    assert accounts.list_repositories(store, alice.id) == []
