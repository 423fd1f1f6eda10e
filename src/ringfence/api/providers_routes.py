"""The REST routes of model providers: an organization's (set by its admins) and a consumer's own.

Keys are sealed at rest (ringfence.store.providers), audited when set or deleted without the secret, and never
returned. A base URL must be one the server may dial (the gateway's Dialer: loopback, private and metadata
addresses are refused unless the operator's egress_allow_ranges allow them), checked when it is saved.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from ringfence import access
from ringfence.api.auth import CurrentPrincipal, CurrentStore
from ringfence.api.errors import COMMON_REFUSALS, refusals
from ringfence.policy import format_time
from ringfence.sessions import connections
from ringfence.store import providers
from ringfence.store.crypto import Secret
from ringfence.store.db import Store
from ringfence.store.errors import Invalid, NotFound
from ringfence.store.models import Organization, User

router = APIRouter(prefix="/v1", tags=["model providers"], responses=refusals(*COMMON_REFUSALS))


class ProviderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["anthropic", "openai"] | None = Field(
        None, description="anthropic (key as x-api-key) or openai (key as a bearer token); the names anthropic and "
        "openai imply their own"
    )  # fmt: skip
    base_url: str = Field(description="exactly what the provider's SDK takes: https://api.anthropic.com, "
                                      "https://api.openai.com/v1, or a compatible endpoint")  # fmt: skip
    api_key: str = Field(min_length=1, max_length=4096, repr=False)


def provider_out(info: providers.ProviderInfo) -> dict[str, Any]:
    return {"name": info.name, "kind": info.kind, "base_url": info.base_url, "updated_at": format_time(info.updated_at)}


def _now(request: Request) -> datetime:
    now: datetime = request.app.state.clock()
    return now


def _org_account(store: Store, org_id: str) -> str:
    with store.read() as db:
        if db.get(Organization, org_id) is None:
            raise NotFound(f"no organization {org_id!r}")
    return org_id


def _user_account(store: Store, user_id: str) -> str:
    with store.read() as db:
        user = db.get(User, user_id)
    if user is None:
        raise NotFound(f"no user {user_id!r}")
    if user.org_id is not None:
        raise Invalid(f"user {user_id} belongs to organization {user.org_id}: its admins set its model providers")
    return user.account_id


async def _set(request: Request, who: CurrentPrincipal, store: Store, account: str, name: str, body: ProviderIn) -> Any:
    info = await connections.set_model_provider(
        store, request.app.state.dialer, who.user, account, name, body.kind, body.base_url, Secret(body.api_key),
        _now(request),
    )  # fmt: skip
    return provider_out(info)


@router.put("/organizations/{org_id}/providers/{name}", summary="Set one of the organization's model providers")
async def set_org_provider(
    org_id: str, name: str, body: ProviderIn, who: CurrentPrincipal, store: CurrentStore, request: Request
) -> dict[str, Any]:
    result: dict[str, Any] = await _set(request, who, store, _org_account(store, org_id), name, body)
    return result


@router.put("/users/{user_id}/providers/{name}", summary="Set one of a consumer's own model providers")
async def set_user_provider(
    user_id: str, name: str, body: ProviderIn, who: CurrentPrincipal, store: CurrentStore, request: Request
) -> dict[str, Any]:
    who.require_self(user_id)
    result: dict[str, Any] = await _set(request, who, store, _user_account(store, user_id), name, body)
    return result


@router.get("/organizations/{org_id}/providers", summary="The organization's model providers (never their keys)")
def list_org_providers(org_id: str, who: CurrentPrincipal, store: CurrentStore) -> list[dict[str, Any]]:
    account = _org_account(store, org_id)
    access.check_sees_providers(who.user, account)
    return [provider_out(p) for p in providers.list_providers(store, account)]


@router.get("/users/{user_id}/providers", summary="A consumer's own model providers (never their keys)")
def list_user_providers(user_id: str, who: CurrentPrincipal, store: CurrentStore) -> list[dict[str, Any]]:
    who.require_self(user_id)
    return [provider_out(p) for p in providers.list_providers(store, _user_account(store, user_id))]


@router.delete("/organizations/{org_id}/providers/{name}", status_code=204, summary="Remove a model provider")
def delete_org_provider(
    org_id: str, name: str, who: CurrentPrincipal, store: CurrentStore, request: Request
) -> Response:
    account = _org_account(store, org_id)
    access.check_manage_providers(who.user, account)
    providers.delete_provider(store, account, name, _now(request), actor=who.id)
    return Response(status_code=204)


@router.delete("/users/{user_id}/providers/{name}", status_code=204, summary="Remove one of your model providers")
def delete_user_provider(
    user_id: str, name: str, who: CurrentPrincipal, store: CurrentStore, request: Request
) -> Response:
    who.require_self(user_id)
    account = _user_account(store, user_id)
    access.check_manage_providers(who.user, account)
    providers.delete_provider(store, account, name, _now(request), actor=who.id)
    return Response(status_code=204)
