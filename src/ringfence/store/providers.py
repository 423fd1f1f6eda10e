"""Model providers at rest: an account's (an organization's, or a consumer's own) named providers, their key sealed.

Owns: what a provider is (a name, a kind, a base URL, a key) and its checks, `set_provider` (seal and store,
replacing any earlier one of that name; audited without the secret), `list_providers` (never a key),
`delete_provider`, and `load_providers` (unseal: what the session manager calls when it makes a session's gateway
route, and nothing else does). The key is bound to its account, name, kind and base URL by the associated data: a
row edited to send the key elsewhere does not decrypt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import select

from ringfence.audit import AuditEntry
from ringfence.policy.calendar import format_time
from ringfence.store.crypto import Secret, new_data_key, seal, unseal
from ringfence.store.db import Store
from ringfence.store.errors import Invalid, NotFound
from ringfence.store.ids import new_id
from ringfence.store.models import ModelProvider

KINDS = ("anthropic", "openai")  # anthropic: Messages API, key as x-api-key; openai: key as a bearer token
NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")  # what the gateway route /model/NAME/... takes
_MAX_KEY = 4096


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    """A provider as anyone may see it: everything but its key."""

    name: str
    kind: str
    base_url: str
    updated_at: datetime


def check_provider(name: str, kind: str | None, base_url: str) -> str:
    """The provider's kind (names `anthropic` and `openai` default to their own), or Invalid naming the field."""
    if not NAME.match(name):
        raise Invalid(f"provider name {name[:60]!r}: use 1-40 lower-case letters, digits or '_', a letter first")
    kind = kind or (name if name in KINDS else None)
    if kind is None:
        raise Invalid(f"provider {name!r}: give its kind ({' or '.join(KINDS)}); only those two names imply it")
    if kind not in KINDS:
        raise Invalid(f"provider kind {kind[:40]!r} is not one of: {', '.join(KINDS)}")
    parts = urlsplit(base_url)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username
        or parts.password
        or parts.query
        or parts.fragment
        or len(base_url) > 500
        or any(ord(c) < 33 for c in base_url)
    ):
        raise Invalid(
            f"base_url {base_url[:100]!r} must be a plain http(s) URL (no credentials, query or fragment), exactly "
            "what the provider's own SDK takes: https://api.anthropic.com, https://api.openai.com/v1"
        )
    return kind


def _context(account_id: str, name: str, kind: str, base_url: str) -> bytes:
    return f"ringfence model provider\x00{account_id}\x00{name}\x00{kind}\x00{base_url}".encode()


def set_provider(
    store: Store,
    account_id: str,
    name: str,
    kind: str | None,
    base_url: str,
    key: Secret,
    at: datetime,
    *,
    actor: str,
) -> ProviderInfo:
    kind = check_provider(name, kind, base_url)
    if not key.reveal().strip() or len(key.reveal()) > _MAX_KEY:
        raise Invalid(f"api_key: give the provider's key (1-{_MAX_KEY} characters)")
    data_key = new_data_key()
    context = _context(account_id, name, kind, base_url)
    nonce, ciphertext = seal(data_key, key.reveal().encode(), context)
    with store.write() as db:
        row = db.scalar(select(ModelProvider).where(ModelProvider.account_id == account_id, ModelProvider.name == name))
        if row is None:
            row = ModelProvider(id=new_id("prv"), account_id=account_id, name=name)
            db.add(row)
        row.kind, row.base_url, row.nonce, row.ciphertext, row.updated_at = kind, base_url, nonce, ciphertext, at
        row.wrapped_key = store.master.wrap(data_key, context)
        row.master_key_id = store.master.key_id
        store.audit.append(
            db.connection(),
            AuditEntry(
                "provider.set",
                account_id,
                format_time(at),
                {"name": name, "kind": kind, "base_url": base_url, "by": actor},
            ),
        )
    return ProviderInfo(name, kind, base_url, at)


def list_providers(store: Store, account_id: str) -> list[ProviderInfo]:
    with store.read() as db:
        rows = db.scalars(
            select(ModelProvider).where(ModelProvider.account_id == account_id).order_by(ModelProvider.name)
        ).all()
        return [ProviderInfo(r.name, r.kind, r.base_url, r.updated_at) for r in rows]


def delete_provider(store: Store, account_id: str, name: str, at: datetime, *, actor: str) -> None:
    with store.write() as db:
        row = db.scalar(select(ModelProvider).where(ModelProvider.account_id == account_id, ModelProvider.name == name))
        if row is None:
            raise NotFound(f"no model provider {name[:40]!r} in this account")
        db.delete(row)
        store.audit.append(
            db.connection(), AuditEntry("provider.deleted", account_id, format_time(at), {"name": name, "by": actor})
        )


def load_providers(store: Store, account_id: str) -> list[tuple[ProviderInfo, Secret]]:
    """Every provider of the account with its key (for a session's gateway route, at start)."""
    found = []
    with store.read() as db:
        for row in db.scalars(select(ModelProvider).where(ModelProvider.account_id == account_id)).all():
            context = _context(account_id, row.name, row.kind, row.base_url)
            data_key = store.master.unwrap(row.wrapped_key, context)
            plain = unseal(data_key, row.nonce, row.ciphertext, context, f"the key of model provider {row.name}")
            found.append((ProviderInfo(row.name, row.kind, row.base_url, row.updated_at), Secret(plain.decode())))
    return found
