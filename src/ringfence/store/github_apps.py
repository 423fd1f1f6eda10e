"""An organization's GitHub App at rest: its id, API URL, the git host it serves, and its private key, sealed.

Owns: `set_github_app` (checks the key is an RSA private key in PEM and the URL's form, seals and stores,
replacing the one before; audited without the key), `github_app_info` (never the key), `delete_github_app`, and
`load_github_app` (unseal: for a member's session on that host, and nothing else). The key is bound to its
organization, app id, API URL and git host by the associated data: a row edited to send it elsewhere does not
decrypt. The git host is the API's host, but `github.com` for `api.github.com` (GitHub Enterprise Server serves its
API at `https://HOST/api/v3`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ringfence.audit import AuditEntry
from ringfence.policy.calendar import format_time
from ringfence.store.crypto import Secret, new_data_key, seal, unseal
from ringfence.store.db import Store
from ringfence.store.errors import Invalid, NotFound
from ringfence.store.models import GitHubAppRow

DEFAULT_API = "https://api.github.com"
_APP_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")  # a numeric app id or a client id (Iv1...)


@dataclass(frozen=True, slots=True)
class GitHubAppInfo:
    org_id: str
    app_id: str
    api_url: str
    git_host: str
    updated_at: datetime


def git_host_of(api_url: str) -> str:
    host = (urlsplit(api_url).hostname or "").lower()
    return "github.com" if host == "api.github.com" else host


def _check(app_id: str, private_key: Secret, api_url: str) -> None:
    if not _APP_ID.match(app_id):
        raise Invalid(f"app_id {app_id[:40]!r}: the app's id (digits) or client id")
    parts = urlsplit(api_url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.query or parts.fragment:
        raise Invalid(f"api_url {api_url[:100]!r} must be a plain http(s) URL, e.g. {DEFAULT_API}")
    try:
        key = serialization.load_pem_private_key(private_key.reveal().encode(), password=None)
    except (ValueError, TypeError):
        raise Invalid("private_key: not a private key in PEM (the .pem file GitHub gave for the app)") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise Invalid("private_key: GitHub Apps sign with RSA; this key is not an RSA key")


def _context(org_id: str, app_id: str, api_url: str, git_host: str) -> bytes:
    return f"ringfence github app\x00{org_id}\x00{app_id}\x00{api_url}\x00{git_host}".encode()


def set_github_app(
    store: Store, org_id: str, app_id: str, private_key: Secret, api_url: str, at: datetime, *, actor: str
) -> GitHubAppInfo:
    _check(app_id, private_key, api_url)
    git_host = git_host_of(api_url)
    data_key = new_data_key()
    context = _context(org_id, app_id, api_url, git_host)
    nonce, ciphertext = seal(data_key, private_key.reveal().encode(), context)
    with store.write() as db:
        row = db.get(GitHubAppRow, org_id)
        if row is None:
            row = GitHubAppRow(org_id=org_id)
            db.add(row)
        row.app_id, row.api_url, row.git_host, row.updated_at = app_id, api_url, git_host, at
        row.nonce, row.ciphertext = nonce, ciphertext
        row.wrapped_key, row.master_key_id = store.master.wrap(data_key, context), store.master.key_id
        store.audit.append(
            db.connection(),
            AuditEntry("github_app.set", org_id, format_time(at), {"app_id": app_id, "api_url": api_url, "by": actor}),
        )
    return GitHubAppInfo(org_id, app_id, api_url, git_host, at)


def github_app_info(store: Store, org_id: str) -> GitHubAppInfo | None:
    with store.read() as db:
        row = db.get(GitHubAppRow, org_id)
        if row is None:
            return None
        return GitHubAppInfo(org_id, row.app_id, row.api_url, row.git_host, row.updated_at)


def delete_github_app(store: Store, org_id: str, at: datetime, *, actor: str) -> None:
    with store.write() as db:
        row = db.get(GitHubAppRow, org_id)
        if row is None:
            raise NotFound(f"organization {org_id} has no GitHub App")
        db.delete(row)
        store.audit.append(db.connection(), AuditEntry("github_app.deleted", org_id, format_time(at), {"by": actor}))


def load_github_app(store: Store, org_id: str) -> tuple[GitHubAppInfo, Secret] | None:
    """The app with its key, for a member's session on its host (None: the organization has none)."""
    with store.read() as db:
        row = db.get(GitHubAppRow, org_id)
        if row is None:
            return None
        context = _context(org_id, row.app_id, row.api_url, row.git_host)
        data_key = store.master.unwrap(row.wrapped_key, context)
        plain = unseal(data_key, row.nonce, row.ciphertext, context, f"the GitHub App key of {org_id}")
        return GitHubAppInfo(org_id, row.app_id, row.api_url, row.git_host, row.updated_at), Secret(plain.decode())
