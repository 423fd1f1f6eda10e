"""Bearer-token authentication, and the caller as the API's routes see it.

The rules of who may do what are ringfence.access's (shared with the console); `Principal` only applies them to
the authenticated user.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from ringfence import access
from ringfence.api.errors import Unauthorized
from ringfence.store import accounts
from ringfence.store.db import Store
from ringfence.store.models import ApiKey, User


@dataclass(frozen=True)
class Principal:
    user: User
    key: ApiKey

    @property
    def id(self) -> str:
        return self.user.id

    def require_self(self, user_id: str) -> None:
        access.check_self(self.user, user_id)

    def require_server_admin(self) -> None:
        access.check_server_admin(self.user)

    def require_org_admin(self, org_id: str) -> None:
        access.check_org_admin(self.user, org_id)

    def may_see_org(self, org_id: str) -> bool:
        return access.sees_org(self.user, org_id)


def store_of(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def principal(request: Request) -> Principal:
    checked = getattr(request.state, "principal", None)  # the front door authenticated a request with a body
    if checked is not None:
        return Principal(*checked)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("send 'Authorization: Bearer <token>'")
    found = accounts.authenticate(store_of(request), token.strip())
    if found is None:
        raise Unauthorized("the bearer token is unknown, malformed or revoked")
    return Principal(*found)


CurrentPrincipal = Annotated[Principal, Depends(principal)]
CurrentStore = Annotated[Store, Depends(store_of)]
