"""The REST routes of environments: an account's named settings for its sessions (network, agent, limits, setup).

Everyone in the account may list and use them; only who manages the account changes them: an organization's
admins, or a consumer for their own account.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import Field, field_validator

from ringfence import access
from ringfence.api.auth import CurrentPrincipal, CurrentStore, Principal
from ringfence.api.errors import COMMON_REFUSALS, refusals
from ringfence.policy import format_time
from ringfence.sessions.environments import EnvironmentSettings, check_name
from ringfence.store import environments
from ringfence.store.errors import Invalid
from ringfence.store.models import Environment

router = APIRouter(prefix="/v1", tags=["environments"], responses=refusals(*COMMON_REFUSALS))


class EnvironmentIn(EnvironmentSettings):
    name: str = Field(min_length=1, max_length=100)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value)


def require_manager(who: Principal) -> str:
    """The account the caller manages (their own), or Forbidden."""
    return access.managed_account(who.user)


def env_out(row: Environment) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "account_id": row.account_id,
        "settings": row.settings,
        "created_at": format_time(row.created_at),
        "updated_at": format_time(row.updated_at),
    }


def _within_ceiling(settings: EnvironmentSettings, request: Request) -> EnvironmentSettings:
    """Refused (422, naming the limit and the ceiling) when it asks for more than the operator allows."""
    try:
        settings.check_operator(request.app.state.ceiling, request.app.state.network_modes)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    return settings


def _now(request: Request) -> datetime:
    clock: Callable[[], datetime] = request.app.state.clock
    return clock()


@router.post("/environments", status_code=201, summary="Create an environment in your account")
def create(body: EnvironmentIn, who: CurrentPrincipal, store: CurrentStore, request: Request) -> dict[str, Any]:
    account = require_manager(who)
    checked = EnvironmentSettings.model_validate(body.model_dump(exclude={"name"}))
    settings = _within_ceiling(checked, request).model_dump()
    return env_out(environments.create_environment(store, account, body.name, settings, _now(request), actor=who.id))


@router.get("/environments", summary="Your account's environments")
def list_all(who: CurrentPrincipal, store: CurrentStore) -> list[dict[str, Any]]:
    return [env_out(row) for row in environments.list_environments(store, who.user.account_id)]


@router.get("/environments/{name}", summary="One environment, by name or id")
def show(name: str, who: CurrentPrincipal, store: CurrentStore) -> dict[str, Any]:
    return env_out(environments.find_environment(store, who.user.account_id, name))


@router.put("/environments/{name}", summary="Replace an environment's settings (for sessions started from now on)")
def replace(
    name: str, body: EnvironmentSettings, who: CurrentPrincipal, store: CurrentStore, request: Request
) -> dict[str, Any]:
    account = require_manager(who)
    settings = _within_ceiling(body, request).model_dump()
    row = environments.replace_environment(store, account, name, settings, _now(request), actor=who.id)
    return env_out(row)


@router.delete("/environments/{name}", status_code=204, summary="Delete an environment")
def delete(name: str, who: CurrentPrincipal, store: CurrentStore, request: Request) -> Response:
    account = require_manager(who)
    environments.delete_environment(store, account, name, _now(request), actor=who.id)
    return Response(status_code=204)
