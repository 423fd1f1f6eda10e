"""The REST routes of an organization's GitHub App: set by its admins, seen (without its key) by its members.

The app serves the members' repositories on its host with installation tokens, minted per session for that one
repository and revoked at its end (ringfence.gateway.credentials); a repository's own stored token wins.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from ringfence import access
from ringfence.api.auth import CurrentPrincipal, CurrentStore
from ringfence.api.errors import COMMON_REFUSALS, refusals
from ringfence.policy import format_time
from ringfence.sessions import connections
from ringfence.store import github_apps
from ringfence.store.crypto import Secret
from ringfence.store.db import Store
from ringfence.store.errors import NotFound
from ringfence.store.models import Organization

router = APIRouter(prefix="/v1", tags=["github app"], responses=refusals(*COMMON_REFUSALS))


class GitHubAppIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    app_id: str = Field(min_length=1, max_length=64, description="the app's id (or client id)")
    private_key: str = Field(min_length=1, max_length=16_384, repr=False, description="the app's private key, PEM")
    api_url: str = Field(github_apps.DEFAULT_API, max_length=500,
                         description="GitHub's API; GitHub Enterprise Server: https://HOST/api/v3")  # fmt: skip


def _out(info: github_apps.GitHubAppInfo) -> dict[str, Any]:
    return {"app_id": info.app_id, "api_url": info.api_url, "git_host": info.git_host,
            "updated_at": format_time(info.updated_at)}  # fmt: skip


def _org(store: Store, org_id: str) -> str:
    with store.read() as db:
        if db.get(Organization, org_id) is None:
            raise NotFound(f"no organization {org_id!r}")
    return org_id


def _now(request: Request) -> datetime:
    now: datetime = request.app.state.clock()
    return now


@router.put("/organizations/{org_id}/github-app", summary="Set the organization's GitHub App (its key sealed)")
async def set_app(
    org_id: str, body: GitHubAppIn, who: CurrentPrincipal, store: CurrentStore, request: Request
) -> dict[str, Any]:
    info = await connections.set_github_app(
        store, request.app.state.dialer, who.user, _org(store, org_id), body.app_id, Secret(body.private_key),
        body.api_url, _now(request),
    )  # fmt: skip
    return _out(info)


@router.get("/organizations/{org_id}/github-app", summary="The organization's GitHub App (never its key)")
def get_app(org_id: str, who: CurrentPrincipal, store: CurrentStore) -> dict[str, Any]:
    access.check_sees_providers(who.user, _org(store, org_id))
    info = github_apps.github_app_info(store, org_id)
    if info is None:
        raise NotFound(f"organization {org_id} has no GitHub App")
    return _out(info)


@router.delete("/organizations/{org_id}/github-app", status_code=204, summary="Remove the organization's GitHub App")
def delete_app(org_id: str, who: CurrentPrincipal, store: CurrentStore, request: Request) -> Response:
    access.check_manage_github_app(who.user, _org(store, org_id))
    github_apps.delete_github_app(store, org_id, _now(request), actor=who.id)
    return Response(status_code=204)
