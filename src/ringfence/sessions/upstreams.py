"""Where a session's upstreams are: its repository's host and credential, and its account's model providers.

Owns: `RepositoryHost` (one host for every repository: tests, a single-host deployment), `StoreHosts` (each
repository's own host; its credential from the store: the repository's own token, else the installation tokens of
its user's organization's GitHub App when the repository is on the app's host), and `StoreModels` (the account's
model providers from the store, then the operator's `[providers]` for names the account has not set). The session
manager asks these when it makes a session's gateway route; keys are read then, and held only by that route.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from ringfence.gateway.credentials import (
    CredentialSource,
    GitHubApp,
    GitHubInstallationTokens,
    NoCredential,
    StoredToken,
)
from ringfence.gateway.git_proxy import ModelUpstream, model_upstream
from ringfence.gateway.routes import Repository
from ringfence.net.dial import Dialer
from ringfence.store import github_apps, providers
from ringfence.store.credentials import load_credential
from ringfence.store.crypto import Secret
from ringfence.store.db import Store
from ringfence.store.models import Repository as RepositoryRow
from ringfence.store.models import RepositoryCredential, User


@dataclass(frozen=True)
class RepositoryHost:
    """One host for every repository (tests, a single-host deployment): its smart-HTTP base URL and where each
    repository's credential comes from."""

    upstream: str
    credential: Callable[[str], CredentialSource]
    api_url: str | None = None

    def resolve(self, repository: RepositoryRow) -> tuple[str, CredentialSource, str | None]:
        return self.upstream, self.credential(repository.id), self.api_url


@dataclass(frozen=True)
class StoreHosts:
    """Each repository's own host, from the URL it was connected with, and its credential from the store (sealed;
    unsealed by the gateway at injection). A repository without a stored credential gets none."""

    store: Store
    dialer: Dialer | None = None  # what a GitHub App's API calls go through; None: no GitHub Apps

    def resolve(self, repository: RepositoryRow) -> tuple[str, CredentialSource, str | None]:
        parts = urlsplit(repository.url)
        upstream = f"{parts.scheme}://{parts.netloc}"
        with self.store.read() as db:
            stored = db.get(RepositoryCredential, repository.id) is not None
            user = db.get(User, repository.user_id)
            org_id = user.org_id if user is not None else None
        if not stored:
            app = github_apps.load_github_app(self.store, org_id) if org_id and self.dialer else None
            if app is not None and self.dialer is not None and app[0].git_host == (parts.hostname or "").lower():
                info, key = app
                tokens = GitHubInstallationTokens(
                    GitHubApp(info.app_id, key, info.api_url),
                    Repository(repository.owner, repository.name),
                    self.dialer,
                )
                return upstream, tokens, info.api_url
            return upstream, NoCredential(), None
        store, repo_id = self.store, repository.id
        return upstream, StoredToken(lambda: load_credential(store, repo_id)), None


class HostResolver(Protocol):
    def resolve(self, repository: RepositoryRow) -> tuple[str, CredentialSource, str | None]: ...


class ModelSource(Protocol):
    def models(self, account_id: str) -> tuple[ModelUpstream, ...]: ...


class NoModels:
    """No model provider at all (the built-in agent needs none)."""

    def models(self, account_id: str) -> tuple[ModelUpstream, ...]:
        return ()


@dataclass(frozen=True)
class DefaultProvider:
    """An operator's provider (`[providers.NAME]` in ringfence.toml): the key is read from its file when used."""

    kind: str
    base_url: str
    key_file: Path


@dataclass(frozen=True)
class StoreModels:
    """The account's own providers (sealed in the store), then the operator's `defaults` for names it has not set:
    the account's own wins."""

    store: Store
    defaults: Mapping[str, DefaultProvider] = field(default_factory=dict)

    def models(self, account_id: str) -> tuple[ModelUpstream, ...]:
        found = {
            info.name: model_upstream(info.name, info.kind, info.base_url, key)
            for info, key in providers.load_providers(self.store, account_id)
        }
        for name, default in self.defaults.items():
            if name not in found:
                key = Secret(default.key_file.read_text().strip())
                found[name] = model_upstream(name, default.kind, default.base_url, key)
        return tuple(found[name] for name in sorted(found))
