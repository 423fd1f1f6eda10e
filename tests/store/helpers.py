"""Builders for store tests, and the scan that looks for bytes in every file a store wrote."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from ringfence.policy import EventType, SessionDecision
from ringfence.store import accounts, content, ledger
from ringfence.store.db import Store
from ringfence.store.errors import ContentRefused
from ringfence.store.models import DataKey, Organization, User
from tests.conftest import T0
from tests.policy.helpers import RULES
from tests.policy.histories import History


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


def capture_key(store: Store, key_id: str, keys: dict[str, set[bytes]], sid: str) -> None:
    """Remember a data key (raw and wrapped) while it exists, to prove later that nothing of it is left."""
    with store.read() as db:
        row = db.get(DataKey, key_id)
        assert row is not None
        raw = store.master.unwrap(row.wrapped, f"ringfence data key\x00{key_id}".encode())
        keys.setdefault(sid, set()).update({raw, row.wrapped})


def apply(store: Store, history: History) -> tuple[dict[str, str], dict[str, list[str]], int, dict[str, set[bytes]]]:
    """Replay `history` through the store. Returns (scenario account -> store account, session -> markers,
    number of policy events recorded, session -> key material it had)."""
    actors: dict[str, str] = {}
    account_ids: dict[str, str] = {}
    zdr_keys: dict[str, str] = {}
    recorded = 0
    for account in history.accounts:
        if RULES.plans[account.plan].is_consumer:
            user = accounts.create_user(store, account.id, T0, actor="t", plan=account.plan)
            actors[account.id], account_ids[account.id] = user.id, user.id
        else:
            org = accounts.create_organization(store, account.id, account.plan, T0, actor="t")
            member = accounts.create_user(store, "m", T0, actor="t", org_id=org.id, org_admin=True)
            actors[account.id], account_ids[account.id] = member.id, org.id
            if account.zdr:
                accounts.set_org_switch(store, org.id, "zdr", True, T0, actor=member.id)
                recorded += 1
            if RULES.plans[account.plan].can_have_zdr:
                zdr_keys[account.id] = accounts.create_api_key(store, member.id, "z", T0, actor="t", zdr=True)[0].id
    markers: dict[str, list[str]] = {}
    keys: dict[str, set[bytes]] = {}
    for event in sorted(history.events, key=lambda e: e.seq):
        actor, at, sid = actors[event.account], event.at, event.session
        if event.type is EventType.CONSENT:
            accounts.set_training(store, actor, bool(event.value), at, actor=actor)
        elif event.type in (EventType.DPP, EventType.ZDR):
            accounts.set_org_switch(
                store, account_ids[event.account], event.type.value, bool(event.value), at, actor=actor
            )
        elif event.type is EventType.ACTIVITY:
            assert sid is not None
            if sid in markers:
                content.record_activity(store, sid, at, actor=actor)
            else:
                key = zdr_keys[event.account] if event.zdr_key else None
                content.start_session(store, actor, at, repository_id=None, api_key_id=key, session_id=sid)
                markers[sid] = []
            marker = f"MARK-{sid}-{event.seq}-c0ffee"
            markers[sid].append(marker)
            try:
                content.put_content(store, sid, "prompt", marker, at, turn=event.seq)
                capture_key(store, sid, keys, sid)
            except ContentRefused as refused:
                assert "zero data retention" in str(refused)
        elif event.type is EventType.DELETE:
            content.delete_session(store, sid, at, actor=actor)
        elif event.type is EventType.FEEDBACK:
            marker = f"FEEDBACK-{sid}-{event.seq}-c0ffee"
            markers[sid].append(marker)
            content.add_feedback(store, sid, marker, at, actor=actor)
        else:
            content.rate(store, sid, event.value, at, actor=actor)  # type: ignore[arg-type]
        recorded += 1
    return account_ids, markers, recorded, keys


def server_decisions(store: Store, account_ids: Iterable[str], at: datetime) -> dict[str, SessionDecision]:
    """The server's own decisions (its stored ledger replayed) for every session of these accounts."""
    decided: dict[str, SessionDecision] = {}
    with store.read() as db:
        for account in set(account_ids):
            decided.update(ledger.decisions(store, db, account, at).sessions)
    return decided
