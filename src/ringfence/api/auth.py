"""Bearer-token authentication and the few authorization rules of the API.

A user acts on their own settings, keys and repositories; an organization admin on their own organization; a
server admin creates organizations and users and verifies the audit log. Nobody else's settings, ever.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from ringfence.api.errors import Forbidden, Unauthorized
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
        if self.user.id != user_id:
            raise Forbidden("you may act only on your own account")

    def require_server_admin(self) -> None:
        if not self.user.server_admin:
            raise Forbidden("this needs a server admin")

    def require_org_admin(self, org_id: str) -> None:
        if not (self.user.org_admin and self.user.org_id == org_id):
            raise Forbidden(f"this needs an admin of organization {org_id}")

    def may_see_org(self, org_id: str) -> bool:
        return self.user.server_admin or self.user.org_id == org_id


def store_of(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def principal(request: Request) -> Principal:
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
