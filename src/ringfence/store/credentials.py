"""Repository credentials at rest: sealed under a data key of their own, wrapped by the master key.

Owns: `set_credential` (seal and store, replacing any earlier one; audited without the secret) and
`load_credential` (unseal; what the gateway calls at the moment it injects the credential, and nothing else
does). A credential is bound to its repository and kind by the associated data, so a row copied onto another
repository does not decrypt.
"""

from __future__ import annotations

from datetime import datetime

from ringfence.audit import AuditEntry
from ringfence.policy.calendar import format_time
from ringfence.store.crypto import Secret, new_data_key, seal, unseal
from ringfence.store.db import Store
from ringfence.store.errors import NotFound, StoreError
from ringfence.store.models import Repository, RepositoryCredential

KINDS = ("basic", "bearer", "github-app")


def _context(repository_id: str, kind: str) -> bytes:
    return f"ringfence repository credential\x00{repository_id}\x00{kind}".encode()


def set_credential(store: Store, repository_id: str, kind: str, secret: Secret, at: datetime, *, actor: str) -> None:
    if kind not in KINDS:
        raise StoreError(f"credential kind {kind!r} is not one of: {', '.join(KINDS)}")
    if not secret.reveal():
        raise StoreError("an empty credential cannot be stored")
    data_key = new_data_key()
    context = _context(repository_id, kind)
    nonce, ciphertext = seal(data_key, secret.reveal().encode(), context)
    with store.write() as db:
        if db.get(Repository, repository_id) is None:
            raise NotFound(f"repository {repository_id} does not exist")
        row = db.get(RepositoryCredential, repository_id)
        if row is None:
            row = RepositoryCredential(repository_id=repository_id)
            db.add(row)
        row.kind, row.nonce, row.ciphertext, row.updated_at = kind, nonce, ciphertext, at
        row.wrapped_key = store.master.wrap(data_key, context)
        row.master_key_id = store.master.key_id
        store.audit.append(
            db.connection(),
            AuditEntry("credential.set", repository_id, format_time(at), {"kind": kind, "by": actor}),
        )


def delete_credential(store: Store, repository_id: str, at: datetime, *, actor: str) -> None:
    """Remove the repository's credential (the next session runs without one); audited."""
    with store.write() as db:
        row = db.get(RepositoryCredential, repository_id)
        if row is None:
            raise NotFound(f"repository {repository_id} has no credential")
        db.delete(row)
        store.audit.append(
            db.connection(), AuditEntry("credential.deleted", repository_id, format_time(at), {"by": actor})
        )


def load_credential(store: Store, repository_id: str) -> tuple[str, Secret]:
    """The credential's kind and value (for the gateway, at injection time)."""
    with store.read() as db:
        row = db.get(RepositoryCredential, repository_id)
        if row is None:
            raise NotFound(f"repository {repository_id} has no credential")
        context = _context(repository_id, row.kind)
        data_key = store.master.unwrap(row.wrapped_key, context)
        plain = unseal(data_key, row.nonce, row.ciphertext, context, f"the credential of repository {repository_id}")
        return row.kind, Secret(plain.decode())
