"""Encrypted session content: kept only when the policy allows, unreadable at once when deleted."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from ringfence.policy import PolicyError
from ringfence.store import accounts, content
from ringfence.store.crypto import CorruptCiphertext
from ringfence.store.db import Store
from ringfence.store.errors import Conflict, ContentRefused, Invalid, NotFound
from ringfence.store.models import ContentItem, DataKey
from tests.conftest import T0
from tests.store.helpers import consumer, files_containing, org_with_member

LATER = T0 + timedelta(hours=1)


def test_content_round_trips_encrypted(store: Store, data_dir: Path) -> None:
    user = consumer(store, training=True)
    session = content.start_session(store, user.id, T0, repository_id=None)
    for turn, (kind, text) in enumerate(
        [("prompt", "fix the bug ünïcode"), ("output", "done"), ("code_change", "--- a\n+++ b\n")], 1
    ):
        content.put_content(store, session.id, kind, text, LATER, turn=turn)
    records = content.read_content(store, session.id)
    assert [(r.kind, r.turn, r.text) for r in records] == [
        ("prompt", 1, "fix the bug ünïcode"),
        ("output", 2, "done"),
        ("code_change", 3, "--- a\n+++ b\n"),
    ]
    assert files_containing(data_dir, b"fix the bug") == []


def test_bad_content_input_is_refused(store: Store) -> None:
    user = consumer(store)
    session = content.start_session(store, user.id, T0, repository_id=None)
    with pytest.raises(Invalid, match="unknown content kind 'secret'"):
        content.put_content(store, session.id, "secret", "x", LATER, turn=1)  # type: ignore[arg-type]
    with pytest.raises(NotFound, match="no session 'ses_nope'"):
        content.put_content(store, "ses_nope", "prompt", "x", LATER, turn=1)


@pytest.mark.parametrize("how", ["org", "key"])
def test_t6_zdr_content_is_refused_by_the_store_and_never_reaches_disk(store: Store, data_dir: Path, how: str) -> None:
    org, member = org_with_member(store, "api")
    key_id = None
    if how == "org":
        accounts.set_org_switch(store, org.id, "zdr", True, T0, actor=member.id)
    else:
        key, _ = accounts.create_api_key(store, member.id, "zdr key", T0, actor=member.id, zdr=True)
        key_id = key.id
    session = content.start_session(store, member.id, T0, repository_id=None, api_key_id=key_id)
    assert session.zdr
    marker = "ZDR-PROMPT-7f3a9c"
    for kind in content.CONTENT_KINDS:
        with pytest.raises(ContentRefused, match="zero data retention"):
            content.put_content(store, session.id, kind, marker, LATER, turn=1)
    with pytest.raises((ContentRefused, PolicyError), match="zero data retention"):
        content.add_feedback(store, session.id, marker, LATER, actor=member.id)
    content.rate(store, session.id, 2, LATER, actor=member.id)  # a rating holds no content: allowed
    assert files_containing(data_dir, marker.encode()) == []
    assert content.count_content(store, session.id) == 0


def _raw_data_key(store: Store, key_id: str) -> bytes:
    with store.read() as db:
        wrapped = db.get(DataKey, key_id)
        assert wrapped is not None
        return store.master.unwrap(wrapped.wrapped, f"ringfence data key\x00{key_id}".encode())


def test_d1_delete_destroys_the_key_first_and_leaves_nothing_readable(store: Store, data_dir: Path) -> None:
    user = consumer(store, training=True)
    session = content.start_session(store, user.id, T0, repository_id=None)
    marker = "DELETE-ME-PROMPT-0b1c2d"
    for turn in range(1, 30):
        content.put_content(store, session.id, "prompt", f"{marker} {turn} " + "x" * 500, LATER, turn=turn)
    feedback = content.add_feedback(store, session.id, f"{marker} transcript", LATER, actor=user.id)
    keys = [_raw_data_key(store, session.id), _raw_data_key(store, feedback.key_id)]
    with store.read() as db:
        wrapped = [k.wrapped for k in db.scalars(select(DataKey))]
        ciphertexts = [c.ciphertext[:32] for c in db.scalars(select(ContentItem))]
    other = content.start_session(store, user.id, T0, repository_id=None)
    content.put_content(store, other.id, "prompt", "unrelated", LATER, turn=1)

    content.delete_session(store, session.id, LATER, actor=user.id)

    for index, needle in enumerate([marker.encode(), *keys, *wrapped, *ciphertexts]):
        holding = files_containing(data_dir, needle)
        assert holding == [], f"needle {index} (key material is not printed) is still in {holding}"
    with pytest.raises(NotFound, match="deleted"):
        content.read_content(store, session.id)
    with pytest.raises(ContentRefused, match="is deleted"):
        content.put_content(store, session.id, "prompt", "more", LATER, turn=99)
    with pytest.raises(Conflict, match="already deleted"):
        content.delete_session(store, session.id, LATER, actor=user.id)
    assert [r.text for r in content.read_content(store, other.id)] == ["unrelated"]


def test_a_corrupted_ciphertext_is_named_and_nothing_else_is_altered(store: Store, data_dir: Path) -> None:
    user = consumer(store)
    session = content.start_session(store, user.id, T0, repository_id=None)
    content.put_content(store, session.id, "prompt", "first", LATER, turn=1)
    bad = content.put_content(store, session.id, "output", "second", LATER, turn=2)
    store.engine.dispose()
    with sqlite3.connect(data_dir / "ringfence.db") as raw:
        (blob,) = raw.execute("SELECT ciphertext FROM content_items WHERE id = ?", (bad,)).fetchone()
        raw.execute("UPDATE content_items SET ciphertext = ? WHERE id = ?", (bytes([blob[0] ^ 0xFF]) + blob[1:], bad))
    with pytest.raises(CorruptCiphertext, match=f"content item {bad} \\(output\\) of session {session.id}"):
        content.read_content(store, session.id)
    assert content.count_content(store, session.id) == 2


def test_content_after_expiry_is_refused(store: Store) -> None:
    user = consumer(store)
    session = content.start_session(store, user.id, T0, repository_id=None)
    with pytest.raises(ContentRefused, match="expired"):
        content.put_content(store, session.id, "prompt", "late", T0 + timedelta(days=31), turn=1)


def test_sessions_only_on_connected_repositories(store: Store) -> None:
    alice, bob = consumer(store), consumer(store)
    repo = accounts.connect_repository(store, alice.id, "https://github.com/acme/app", T0, actor=alice.id)
    content.start_session(store, alice.id, T0, repository_id=repo.id)
    with pytest.raises(NotFound, match="not one this user connected"):
        content.start_session(store, bob.id, T0, repository_id=repo.id)


@pytest.mark.parametrize("where", ["content", "feedback"])
def test_oversized_items_are_refused_and_nothing_is_written(store: Store, where: str) -> None:
    user = consumer(store)
    session = content.start_session(store, user.id, T0, repository_id=None)
    huge = "x" * (content.MAX_CONTENT_BYTES + 1)
    with pytest.raises(Invalid, match="at most 16777216 are kept per item"):
        if where == "content":
            content.put_content(store, session.id, "output", huge, LATER, turn=1)
        else:
            content.add_feedback(store, session.id, huge, LATER, actor=user.id)
    assert content.count_content(store, session.id) == 0


def test_the_agents_state_is_session_content_sealed_replaced_and_gone_with_the_session(
    store: Store, data_dir: Path
) -> None:
    """The agent's state (its conversation) is sealed like content, one current copy a session, never listed with
    the readable content, and unreadable the moment the session is deleted."""
    user = consumer(store, training=True)
    session = content.start_session(store, user.id, T0, repository_id=None)
    content.put_agent_state(store, session.id, b"STATE-ONE conversation", LATER, turn=1)
    content.put_agent_state(store, session.id, b"STATE-TWO conversation", LATER, turn=2)
    assert content.read_agent_state(store, session.id) == b"STATE-TWO conversation"
    assert content.read_content(store, session.id) == []  # binary state is not readable content
    with store.read() as db:
        kinds = db.scalars(select(ContentItem.kind).where(ContentItem.session_id == session.id)).all()
    assert kinds == [content.AGENT_STATE]  # replaced, not piled up
    assert files_containing(data_dir, b"STATE-") == []
    with pytest.raises(Invalid, match="at most"):
        content.put_agent_state(store, session.id, b"x" * (content.MAX_CONTENT_BYTES + 1), LATER, turn=3)
    content.delete_session(store, session.id, LATER, actor=user.id)
    with pytest.raises(NotFound):
        content.read_agent_state(store, session.id)
    with store.read() as db:
        assert db.scalars(select(ContentItem).where(ContentItem.session_id == session.id)).all() == []
