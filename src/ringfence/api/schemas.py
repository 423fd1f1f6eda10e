"""Request and response bodies of the REST API (strict: unknown fields are refused)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from ringfence.policy import format_time
from ringfence.store.models import ApiKey, Organization, Repository, User


class Strict(BaseModel):
    """Unknown fields are refused; switches (StrictBool) take only true or false, not 0, "no" or "off"."""

    model_config = ConfigDict(extra="forbid")


class OrganizationIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    plan: str = Field(description="team, enterprise, api, bedrock, vertex, foundry or gov")


class OrgSettingsIn(Strict):
    dpp: StrictBool | None = Field(None, description="Development Partner Program (team, enterprise, api only)")
    zdr: StrictBool | None = Field(None, description="zero data retention (enterprise and api only)")


class UserIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    plan: str | None = Field(None, description="a consumer plan (free, pro, max) for a consumer user")
    org_id: str | None = Field(None, description="the organization of a member")
    org_admin: StrictBool = False


class TrainingIn(Strict):
    enabled: StrictBool


class ApiKeyIn(Strict):
    name: str = Field("api key", min_length=1, max_length=200)
    zdr: StrictBool = Field(False, description="sessions started with this key run under zero data retention")


class RepositoryIn(Strict):
    url: str = Field(description="https://HOST/OWNER/NAME(.git)")


class RepositoryCredentialIn(Strict):
    """A token the gateway adds to this repository's requests; sealed at rest, never returned."""

    kind: Literal["basic", "bearer"] = Field(
        description="basic: sent as x-access-token:TOKEN (GitHub, most hosts); bearer: as a bearer token"
    )
    token: str = Field(min_length=1, max_length=4096, repr=False)


def org_out(org: Organization) -> dict[str, Any]:
    return {
        "id": org.id,
        "name": org.name,
        "plan": org.plan,
        "dpp": org.dpp,
        "zdr": org.zdr,
        "created_at": format_time(org.created_at),
    }


def user_out(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "name": user.name,
        "plan": user.plan,
        "org_id": user.org_id,
        "org_admin": user.org_admin,
        "server_admin": user.server_admin,
        "training": user.training if user.plan else None,
        "created_at": format_time(user.created_at),
    }


def key_out(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "zdr": key.zdr,
        "created_at": format_time(key.created_at),
        "revoked_at": None if key.revoked_at is None else format_time(key.revoked_at),
    }


def repo_out(repo: Repository) -> dict[str, Any]:
    return {
        "id": repo.id,
        "url": repo.url,
        "host": repo.host,
        "owner": repo.owner,
        "name": repo.name,
        "created_at": format_time(repo.created_at),
    }
