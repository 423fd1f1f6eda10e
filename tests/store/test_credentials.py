"""Repository credentials at rest: sealed (no plaintext in any file), bound to their repository, unsealed only
through the gateway's StoredToken at injection time, and audited without the secret."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, update

from ringfence.audit.table import audit_records
from ringfence.gateway.credentials import CredentialError, StoredToken
from ringfence.store import accounts
from ringfence.store.credentials import load_credential, set_credential
from ringfence.store.crypto import Secret
from ringfence.store.db import Store
from ringfence.store.errors import NotFound, StoreError
from ringfence.store.models import RepositoryCredential

AT = datetime(2026, 11, 24, 12, tzinfo=UTC)
TOKEN = "ghp_STORED_TOKEN_abcdef0123456789"


def two_repositories(store: Store) -> tuple[str, str]:
    user = accounts.create_user(store, "u", AT, actor="t", plan="pro")
    a = accounts.connect_repository(store, user.id, "https://github.com/acme/widgets", AT, actor="t")
    b = accounts.connect_repository(store, user.id, "https://github.com/acme/other", AT, actor="t")
    return a.id, b.id


def test_sealed_at_rest_and_unsealed_for_injection(store: Store, data_dir: Path) -> None:
    repo, _ = two_repositories(store)
    set_credential(store, repo, "basic", Secret(TOKEN), AT, actor="admin")
    header = asyncio.run(StoredToken(lambda: load_credential(store, repo)).authorization(0))
    assert base64.b64decode(header.removeprefix(b"Basic ")) == f"x-access-token:{TOKEN}".encode()
    store.engine.dispose()
    for path in data_dir.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    with store.read() as db:
        texts = [json.dumps(r._asdict(), default=str) for r in db.execute(select(audit_records)).all()]
    assert any("credential.set" in t for t in texts) and not any(TOKEN in t for t in texts)


def test_a_credential_moved_to_another_repository_does_not_decrypt(store: Store) -> None:
    repo, other = two_repositories(store)
    set_credential(store, repo, "bearer", Secret(TOKEN), AT, actor="admin")
    set_credential(store, other, "bearer", Secret("ghp_other_token_value"), AT, actor="admin")
    with store.write() as db:
        row = db.get(RepositoryCredential, repo)
        assert row is not None
        stolen = (row.wrapped_key, row.nonce, row.ciphertext)
        db.execute(
            update(RepositoryCredential)
            .where(RepositoryCredential.repository_id == other)
            .values(wrapped_key=stolen[0], nonce=stolen[1], ciphertext=stolen[2])
        )
    with pytest.raises(CredentialError, match="could not be read"):
        asyncio.run(StoredToken(lambda: load_credential(store, other)).authorization(0))


def test_bad_input_is_refused_and_missing_credentials_are_named(store: Store) -> None:
    repo, other = two_repositories(store)
    with pytest.raises(StoreError, match="kind 'password'"):
        set_credential(store, repo, "password", Secret(TOKEN), AT, actor="admin")
    with pytest.raises(NotFound, match="does not exist"):
        set_credential(store, "repo_missing", "basic", Secret(TOKEN), AT, actor="admin")
    with pytest.raises(NotFound, match="has no credential"):
        load_credential(store, other)
