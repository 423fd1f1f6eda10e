"""The REST routes of the foundation: organizations, users, settings, API keys, repositories, policy, audit."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response

from ringfence import access
from ringfence.api.auth import CurrentPrincipal, CurrentStore
from ringfence.api.errors import COMMON_REFUSALS, refusals
from ringfence.api.schemas import (
    ApiKeyIn,
    OrganizationIn,
    OrgSettingsIn,
    RepositoryCredentialIn,
    RepositoryIn,
    TrainingIn,
    UserIn,
    key_out,
    org_out,
    repo_out,
    user_out,
)
from ringfence.policy import explain, format_time
from ringfence.sessions import connections
from ringfence.store import accounts, credentials
from ringfence.store.crypto import Secret
from ringfence.store.db import Store
from ringfence.store.errors import Invalid, NotFound
from ringfence.store.models import Organization, User
from ringfence.store.models import Repository as RepositoryRow

router = APIRouter(prefix="/v1", responses=refusals(*COMMON_REFUSALS))


def _now(request: Request) -> datetime:
    clock: Callable[[], datetime] = request.app.state.clock
    return clock()


@router.get("/me", tags=["users"], summary="The authenticated user")
def me(who: CurrentPrincipal) -> dict[str, Any]:
    return {**user_out(who.user), "key": key_out(who.key)}


@router.post("/organizations", status_code=201, tags=["organizations"], summary="Create an organization")
def create_org(body: OrganizationIn, who: CurrentPrincipal, store: CurrentStore, request: Request) -> dict[str, Any]:
    who.require_server_admin()
    return org_out(accounts.create_organization(store, body.name, body.plan, _now(request), actor=who.id))


def _org(store: CurrentStore, org_id: str, who: CurrentPrincipal) -> Organization:
    with store.read() as db:
        org = db.get(Organization, org_id)
    if org is None or not who.may_see_org(org_id):
        raise NotFound(f"no organization {org_id!r}")
    return org


@router.get("/organizations/{org_id}", tags=["organizations"])
def get_org(org_id: str, who: CurrentPrincipal, store: CurrentStore) -> dict[str, Any]:
    return org_out(_org(store, org_id, who))


@router.put("/organizations/{org_id}/settings", tags=["settings"], summary="Turn DPP or ZDR on or off (org admin)")
def set_org_settings(
    org_id: str, body: OrgSettingsIn, who: CurrentPrincipal, store: CurrentStore, request: Request
) -> dict[str, Any]:
    _org(store, org_id, who)
    who.require_org_admin(org_id)
    changes = body.model_dump(exclude_none=True)
    if not changes:
        raise Invalid("give 'dpp', 'zdr' or both")
    org = accounts.set_org_switches(store, org_id, changes, _now(request), actor=who.id)
    return org_out(org)


@router.get("/organizations/{org_id}/settings/history", tags=["settings"])
def org_settings_history(org_id: str, who: CurrentPrincipal, store: CurrentStore) -> list[dict[str, object]]:
    _org(store, org_id, who)
    return accounts.settings_history(store, org_id)


@router.post("/users", status_code=201, tags=["users"], summary="Create a user (server admin, or org admin)")
def create_user(body: UserIn, who: CurrentPrincipal, store: CurrentStore, request: Request) -> dict[str, Any]:
    access.check_create_user(who.user, body.org_id)
    user = accounts.create_user(
        store, body.name, _now(request), actor=who.id, plan=body.plan, org_id=body.org_id, org_admin=body.org_admin
    )
    return user_out(user)


def _user(store: CurrentStore, user_id: str, who: CurrentPrincipal) -> User:
    with store.read() as db:
        user = db.get(User, user_id)
    return access.visible_user(who.user, user, user_id)


@router.get("/users/{user_id}", tags=["users"])
def get_user(user_id: str, who: CurrentPrincipal, store: CurrentStore) -> dict[str, Any]:
    return user_out(_user(store, user_id, who))


@router.get("/users/{user_id}/settings/training", tags=["settings"], summary="The training setting and its history")
def get_training(user_id: str, who: CurrentPrincipal, store: CurrentStore) -> dict[str, Any]:
    user = _user(store, user_id, who)
    who.require_self(user_id)
    return {"enabled": user.training, "history": accounts.settings_history(store, user_id)}


@router.put("/users/{user_id}/settings/training", tags=["settings"], summary="Turn your training setting on or off")
def set_training(
    user_id: str, body: TrainingIn, who: CurrentPrincipal, store: CurrentStore, request: Request
) -> dict[str, Any]:
    _user(store, user_id, who)
    who.require_self(user_id)
    user = accounts.set_training(store, user_id, body.enabled, _now(request), actor=who.id)
    return {"enabled": user.training, "history": accounts.settings_history(store, user_id)}


@router.post("/users/{user_id}/api-keys", status_code=201, tags=["api keys"], summary="Create a token (shown once)")
def create_key(
    user_id: str, body: ApiKeyIn, who: CurrentPrincipal, store: CurrentStore, request: Request
) -> dict[str, Any]:
    access.check_mint_key(who.user, _user(store, user_id, who))
    key, token = accounts.create_api_key(store, user_id, body.name, _now(request), actor=who.id, zdr=body.zdr)
    return {**key_out(key), "token": token.reveal()}


@router.get("/users/{user_id}/api-keys", tags=["api keys"])
def list_keys(user_id: str, who: CurrentPrincipal, store: CurrentStore) -> list[dict[str, Any]]:
    access.check_sees_keys(who.user, _user(store, user_id, who))
    return [key_out(k) for k in accounts.list_api_keys(store, user_id)]


@router.delete("/users/{user_id}/api-keys/{key_id}", tags=["api keys"])
def revoke_key(
    user_id: str, key_id: str, who: CurrentPrincipal, store: CurrentStore, request: Request
) -> dict[str, Any]:
    access.check_revoke_key(who.user, _user(store, user_id, who))
    return key_out(accounts.revoke_api_key(store, user_id, key_id, _now(request), actor=who.id))


@router.post("/users/{user_id}/repositories", status_code=201, tags=["repositories"])
async def connect_repo(
    user_id: str, body: RepositoryIn, who: CurrentPrincipal, store: CurrentStore, request: Request
) -> dict[str, Any]:
    """The URL's host must be one the server may dial (T4): loopback, private and metadata addresses are refused
    here, with the reason, unless the operator's egress_allow_ranges allow them."""
    _user(store, user_id, who)
    who.require_self(user_id)
    made = await connections.connect_repository(store, request.app.state.dialer, who.user, body.url, _now(request))
    return repo_out(made)


@router.get("/users/{user_id}/repositories", tags=["repositories"])
def list_repos(user_id: str, who: CurrentPrincipal, store: CurrentStore) -> list[dict[str, Any]]:
    _user(store, user_id, who)
    who.require_self(user_id)
    return [repo_out(r) for r in accounts.list_repositories(store, user_id)]


@router.delete("/users/{user_id}/repositories/{repo_id}", status_code=204, tags=["repositories"])
def disconnect_repo(user_id: str, repo_id: str, who: CurrentPrincipal, store: CurrentStore, request: Request) -> None:
    _user(store, user_id, who)
    who.require_self(user_id)
    accounts.disconnect_repository(store, user_id, repo_id, _now(request), actor=who.id)


def _own_repository(store: Store, who: CurrentPrincipal, repo_id: str) -> RepositoryRow:
    with store.read() as db:
        repo = db.get(RepositoryRow, repo_id)
    return access.own_repository(who.user, repo, repo_id)


@router.put("/users/{user_id}/repositories/{repo_id}/credential", tags=["repositories"],
            summary="Store the token the gateway adds for this repository (sealed; never returned)")  # fmt: skip
def set_repo_credential(
    user_id: str, repo_id: str, body: RepositoryCredentialIn, who: CurrentPrincipal, store: CurrentStore,
    request: Request,
) -> dict[str, Any]:  # fmt: skip
    _user(store, user_id, who)
    who.require_self(user_id)
    at = _now(request)
    connections.set_repository_credential(store, who.user, repo_id, body.kind, Secret(body.token), at)
    return {"repository_id": repo_id, "kind": body.kind, "updated_at": format_time(at)}


@router.delete("/users/{user_id}/repositories/{repo_id}/credential", status_code=204, tags=["repositories"],
               summary="Remove the repository's stored token")  # fmt: skip
def delete_repo_credential(
    user_id: str, repo_id: str, who: CurrentPrincipal, store: CurrentStore, request: Request
) -> Response:
    _user(store, user_id, who)
    who.require_self(user_id)
    _own_repository(store, who, repo_id)
    credentials.delete_credential(store, repo_id, _now(request), actor=who.id)
    return Response(status_code=204)


@router.post("/policy/explain", tags=["policy"], summary="Evaluate a scenario exactly as `ringfence policy explain`")
async def policy_explain(request: Request, who: CurrentPrincipal, store: CurrentStore) -> dict[str, Any]:
    return explain(store.rules, await request.body())


@router.get("/audit/verify", tags=["audit"], summary="Walk the audit chain (server admin)")
def audit_verify(who: CurrentPrincipal, store: CurrentStore) -> dict[str, Any]:
    who.require_server_admin()
    result = store.audit.verify(store.engine)
    return {
        "ok": result.ok,
        "records": result.count,
        "head_seq": result.head_seq,
        "head_hash": result.head_hash.hex(),
        "broken_seq": result.broken_seq,
        "problem": result.problem,
    }


@router.get("/policy", tags=["policy"], summary="The policy in force: version, hash, plans and retention rules")
def policy_info(who: CurrentPrincipal, store: CurrentStore) -> dict[str, Any]:
    rules = store.rules
    return {
        "version": rules.version,
        "sha256": rules.sha256,
        "plans": {
            n: {"class": p.account_class, "training": p.training, "dpp": p.can_join_dpp, "zdr": p.can_have_zdr}
            for n, p in rules.plans.items()
        },
        "retention": {n: {"duration": str(r.duration), "describe": r.describe} for n, r in rules.retention.items()},
    }
