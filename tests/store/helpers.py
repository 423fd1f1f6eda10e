"""Builders for store tests, and the scan that looks for bytes in every file a store wrote."""

from __future__ import annotations

from pathlib import Path

from ringfence.store import accounts
from ringfence.store.db import Store
from ringfence.store.models import Organization, User
from tests.conftest import T0


def consumer(store: Store, *, plan: str = "pro", training: bool | None = None) -> User:
    user = accounts.create_user(store, "consumer", T0, actor="test", plan=plan)
    if training is not None:
        accounts.set_training(store, user.id, training, T0, actor=user.id)
    return user


def org_with_member(store: Store, plan: str = "enterprise") -> tuple[Organization, User]:
    org = accounts.create_organization(store, "acme", plan, T0, actor="test")
    member = accounts.create_user(store, "member", T0, actor="test", org_id=org.id, org_admin=True)
    return org, member


def files_containing(root: Path, needle: bytes) -> list[Path]:
    """Every file under `root` (database, WAL, shared memory, exports...) that holds `needle`."""
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]
