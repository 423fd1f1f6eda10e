"""What a session reaches upstream, as users set it: model providers and repositories with their tokens.

Owns: the one sequence of checks both front ends (the REST API and the console) run before storing them: who may
(ringfence.access), the provider's kind and URL form (ringfence.store.providers), and that the server may dial the
URL at all (the gateway's Dialer: loopback, private and metadata addresses are refused unless the operator's
egress_allow_ranges allow them). Secrets pass through sealed by the store; nothing here logs or returns them.
"""

from __future__ import annotations

from datetime import datetime

from ringfence import access
from ringfence.net.dial import Dialer, check_url
from ringfence.store import accounts, credentials, github_apps, providers
from ringfence.store.crypto import Secret
from ringfence.store.db import Store
from ringfence.store.errors import Invalid
from ringfence.store.models import Repository, User


async def _dialable(dialer: Dialer, what: str, url: str) -> None:
    refused = await check_url(dialer, url)
    if refused is not None:
        raise Invalid(
            f"{what} {url!r}: {refused}; this server does not dial it (its operator's egress_allow_ranges say which "
            "private networks it may reach)"
        )


async def set_model_provider(
    store: Store,
    dialer: Dialer,
    actor: User,
    account: str,
    name: str,
    kind: str | None,
    base_url: str,
    key: Secret,
    at: datetime,
) -> providers.ProviderInfo:
    access.check_manage_providers(actor, account)
    checked = providers.check_provider(name, kind, base_url)
    await _dialable(dialer, "base_url", base_url)
    return providers.set_provider(store, account, name, checked, base_url, key, at, actor=actor.id)


async def connect_repository(store: Store, dialer: Dialer, actor: User, url: str, at: datetime) -> Repository:
    """The caller's own connection to a repository, by its URL (the host must be one the server may dial)."""
    _, _, _, canonical = accounts.parse_repository_url(url)
    await _dialable(dialer, "repository url", canonical)
    return accounts.connect_repository(store, actor.id, url, at, actor=actor.id)


def set_repository_credential(
    store: Store, actor: User, repository_id: str, kind: str, token: Secret, at: datetime
) -> None:
    """The token the gateway adds for the caller's own repository (sealed; never returned)."""
    with store.read() as db:
        row = db.get(Repository, repository_id)
    access.own_repository(actor, row, repository_id)
    credentials.set_credential(store, repository_id, kind, token, at, actor=actor.id)


async def set_github_app(
    store: Store, dialer: Dialer, actor: User, org_id: str, app_id: str, private_key: Secret, api_url: str, at: datetime
) -> github_apps.GitHubAppInfo:
    """The organization's GitHub App, serving its members' repositories on the app's host."""
    access.check_manage_github_app(actor, org_id)
    await _dialable(dialer, "api_url", api_url)
    return github_apps.set_github_app(store, org_id, app_id, private_key, api_url, at, actor=actor.id)
