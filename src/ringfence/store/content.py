"""Session records and their encrypted content.

Owns: opening a session record (a policy `activity` event; the policy decides ZDR), later activity, storing
prompts, outputs, code changes and feedback transcripts encrypted with AES-256-GCM under the subject's own data
key (wrapped by the master key), reading them back, and deleting a session by destroying its key first.
The store itself refuses content for a ZDR session, a deleted or expired one, or one without a retention
decision: callers cannot forget to check.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import CursorResult, delete, func, select, update
from sqlalchemy.orm import Session as OrmSession

from ringfence.policy import EventType
from ringfence.store import ledger
from ringfence.store.crypto import new_data_key, seal, unseal
from ringfence.store.db import Store, truncate_wal
from ringfence.store.errors import Conflict, ContentRefused, Invalid, NotFound
from ringfence.store.ids import new_id
from ringfence.store.models import ApiKey, ContentItem, DataKey, Feedback, Rating, Repository, Session, User

# "output" is the turn's readable transcript; "events" the agent's typed events (JSON lines, ringfence.agents).
ContentKind = Literal["prompt", "output", "code_change", "events"]
CONTENT_KINDS: tuple[ContentKind, ...] = ("prompt", "output", "code_change", "events")
AGENT_STATE = "agent_state"  # the agent's own state directory (binary): one current item per session
MAX_CONTENT_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ContentRecord:
    kind: str
    turn: int
    text: str
    created_at: datetime


def start_session(
    store: Store,
    user_id: str,
    at: datetime,
    *,
    repository_id: str | None,
    api_key_id: str | None = None,
    session_id: str | None = None,
    environment_id: str | None = None,
) -> Session:
    """Open a session record. The repository must be one this user connected; ZDR comes from the org or the key."""
    with store.write() as db:
        user = db.get(User, user_id)
        if user is None:
            raise NotFound(f"no user {user_id!r}")
        if user.plan is None and user.org_id is None:
            raise Invalid("this user has no plan and no organization; sessions need one")
        if repository_id is not None:
            repo = db.get(Repository, repository_id)
            if repo is None or repo.user_id != user_id:
                raise NotFound(f"repository {repository_id!r} is not one this user connected")
        zdr_key = False
        if api_key_id is not None:
            key = db.get(ApiKey, api_key_id)
            if key is None or key.user_id != user_id:
                raise NotFound(f"no API key {api_key_id!r} for this user")
            zdr_key = key.zdr
        sid = session_id or new_id("ses")
        if db.get(Session, sid) is not None:
            raise Conflict(f"session {sid!r} already exists")
        row = Session(
            id=sid,
            account_id=user.account_id,
            user_id=user.id,
            repository_id=repository_id,
            zdr=False,
            state="active",
            created_at=at,
            last_activity_at=at,
            policy=store.rules.stamp,
            environment_id=environment_id,
        )
        db.add(row)
        db.flush()
        ledger.record(
            store, db, user.account_id, EventType.ACTIVITY, at, actor=user.id, session_id=sid, zdr_key=zdr_key
        )
    return row


def record_activity(store: Store, session_id: str, at: datetime, *, actor: str) -> Session:
    """A prompt or resume: new activity re-decides consent and retention (refused once deleted or expired)."""
    with store.write() as db:
        row = _session(db, session_id)
        if row.state != "active":
            # The sweeper may have purged it an instant ago, before this request's time: its content is gone.
            raise ContentRefused(f"session {session_id} is {row.state}: its content is gone, start a new session")
        ledger.record(store, db, row.account_id, EventType.ACTIVITY, at, actor=actor, session_id=session_id)
    return row


def _session(db: OrmSession, session_id: str) -> Session:
    row = db.get(Session, session_id)
    if row is None:
        raise NotFound(f"no session {session_id!r}")
    return row


def _writable(row: Session, at: datetime, what: str) -> None:
    if row.zdr:
        raise ContentRefused(f"session {row.id} runs under zero data retention: the store keeps no {what}, by policy")
    if row.state != "active":
        raise ContentRefused(f"session {row.id} is {row.state}: its content is gone and no more is kept")
    if row.delete_after is None or row.retention_rule is None:
        raise ContentRefused(f"session {row.id} has no retention decision: refusing to keep {what} (fail closed)")
    if at >= row.delete_after:
        raise ContentRefused(f"session {row.id} expired at {row.delete_after.isoformat()}: no more content is kept")


def _key(store: Store, db: OrmSession, key_id: str, at: datetime, *, create: bool) -> bytes:
    found = db.get(DataKey, key_id)
    context = f"ringfence data key\x00{key_id}".encode()
    if found is None:
        if not create:
            raise NotFound(f"the data key of {key_id} is destroyed: its content is unreadable")
        data_key = new_data_key()
        db.add(
            DataKey(
                id=key_id,
                wrapped=store.master.wrap(data_key, context),
                master_key_id=store.master.key_id,
                created_at=at,
            )
        )
        return data_key
    return store.master.unwrap(found.wrapped, context)


def _aad(session_id: str, key_id: str, kind: str, turn: int) -> bytes:
    return f"{session_id}\x00{key_id}\x00{kind}\x00{turn}".encode()


def _encoded(text: str) -> bytes:
    plaintext = text.encode("utf-8")
    if len(plaintext) > MAX_CONTENT_BYTES:
        raise Invalid(f"content is {len(plaintext)} bytes; at most {MAX_CONTENT_BYTES} are kept per item")
    return plaintext


def _seal_item(
    store: Store, db: OrmSession, session_id: str, key_id: str, kind: str, turn: int, plaintext: bytes, at: datetime
) -> ContentItem:
    """Encrypt `plaintext` under the data key `key_id` (created on first use) and add it as a content item."""
    data_key = _key(store, db, key_id, at, create=True)
    nonce, ciphertext = seal(data_key, plaintext, _aad(session_id, key_id, kind, turn))
    item = ContentItem(
        session_id=session_id, key_id=key_id, kind=kind, turn=turn, nonce=nonce, ciphertext=ciphertext, created_at=at
    )
    db.add(item)
    db.flush()
    return item


def put_content(store: Store, session_id: str, kind: ContentKind, text: str, at: datetime, *, turn: int) -> int:
    """Encrypt and keep one piece of content; returns its id. Refused under ZDR by the store itself."""
    if kind not in CONTENT_KINDS:
        raise Invalid(f"unknown content kind {kind!r} (known: {', '.join(CONTENT_KINDS)})")
    plaintext = _encoded(text)
    with store.write() as db:
        row = _session(db, session_id)
        _writable(row, at, kind)
        item = _seal_item(store, db, session_id, session_id, kind, turn, plaintext, at)
        ledger.audit_content(store, db, session_id, at, kind=kind, turn=turn, size=len(plaintext))
    return item.id


def read_content(store: Store, session_id: str, *, include_feedback: bool = False) -> list[ContentRecord]:
    """Decrypt a session's content in the order it was written. Corrupted ciphertext raises CorruptCiphertext."""
    with store.read() as db:
        row = _session(db, session_id)
        if row.state != "active":
            raise NotFound(f"session {session_id} is {row.state}: its content is gone")
        query = select(ContentItem).where(ContentItem.session_id == session_id, ContentItem.kind != AGENT_STATE)
        query = query.order_by(ContentItem.id)
        if not include_feedback:
            query = query.where(ContentItem.key_id == session_id)
        records, keys = [], {}
        for item in db.scalars(query):
            if item.key_id not in keys:
                keys[item.key_id] = _key(store, db, item.key_id, item.created_at, create=False)
            text = unseal(
                keys[item.key_id],
                item.nonce,
                item.ciphertext,
                _aad(session_id, item.key_id, item.kind, item.turn),
                f"content item {item.id} ({item.kind}) of session {session_id}",
            )
            records.append(ContentRecord(item.kind, item.turn, text.decode("utf-8"), item.created_at))
        return records


def delete_session(store: Store, session_id: str, at: datetime, *, actor: str) -> None:
    """Delete by the user: destroy the data keys first (content unreadable at once), then remove the rows."""
    with store.write() as db:
        row = _session(db, session_id)
        if row.state == "deleted":
            raise Conflict(f"session {session_id} is already deleted")
        key_ids = [session_id, *db.scalars(select(Feedback.key_id).where(Feedback.session_id == session_id))]
        destroyed = _count(db.execute(delete(DataKey).where(DataKey.id.in_(key_ids))))
        removed = _count(db.execute(delete(ContentItem).where(ContentItem.session_id == session_id)))
        db.execute(update(Feedback).where(Feedback.session_id == session_id).values(purged_at=at))
        ledger.record(
            store,
            db,
            row.account_id,
            EventType.DELETE,
            at,
            actor=actor,
            session_id=session_id,
            audit={"keys_destroyed": destroyed, "items_removed": removed},
        )
        row.state, row.deleted_at, row.purged_at, row.delete_after = "deleted", at, at, None
        row.retention_rule = "deleted"
    truncate_wal(store.engine)


def _count(result: object) -> int:
    return result.rowcount if isinstance(result, CursorResult) else 0


def add_feedback(store: Store, session_id: str, transcript: str, at: datetime, *, actor: str) -> Feedback:
    """Feedback with its transcript: kept 5 years under its own key; refused under ZDR (by the policy and here)."""
    plaintext = _encoded(transcript)
    with store.write() as db:
        row = _session(db, session_id)
        if row.zdr:
            raise ContentRefused(f"session {session_id} runs under zero data retention: no transcript is kept")
        ledger.record(store, db, row.account_id, EventType.FEEDBACK, at, actor=actor, session_id=session_id)
        feedback_id = new_id("fbk")
        rule = store.rules.retention["feedback"]
        _seal_item(store, db, session_id, feedback_id, "feedback", 0, plaintext, at)
        feedback = Feedback(
            id=feedback_id,
            session_id=session_id,
            key_id=feedback_id,
            created_at=at,
            delete_after=rule.duration.after(at),
        )
        db.add(feedback)
    return feedback


def send_feedback(store: Store, session_id: str, comment: str, at: datetime, *, actor: str) -> Feedback:
    """The user's comment with the session's kept turns as the transcript, built here from what the service holds
    (the console, the CLI through the API, and the API itself all send this one form)."""
    return add_feedback(
        store, session_id, feedback_transcript(comment, read_content(store, session_id)), at, actor=actor
    )


def feedback_transcript(comment: str, kept: list[ContentRecord]) -> str:
    return "\n\n".join([f"comment: {comment}", *(f"[turn {i.turn} {i.kind}]\n{i.text}" for i in kept)])


def rate(store: Store, session_id: str, value: int | str, at: datetime, *, actor: str) -> None:
    """A quality rating: only the value is kept; it never touches training settings or exports."""
    with store.write() as db:
        row = _session(db, session_id)
        ledger.record(store, db, row.account_id, EventType.RATING, at, actor=actor, session_id=session_id, value=value)
        db.add(Rating(session_id=session_id, value=str(value), created_at=at))


def count_content(store: Store, session_id: str) -> int:
    with store.read() as db:
        return int(db.scalar(select(func.count()).where(ContentItem.session_id == session_id)) or 0)


def record_turn(store: Store, session_id: str, turn: int) -> None:
    """The session's number of turns (content-free metadata, kept under zero data retention too)."""
    with store.write() as db:
        _session(db, session_id).turns = turn


def last_turn(store: Store, session_id: str) -> int:
    """The highest turn kept for a session (0: none), so a resumed session numbers its turns on from there."""
    with store.read() as db:
        return int(db.scalar(select(func.max(ContentItem.turn)).where(ContentItem.session_id == session_id)) or 0)


def keeps_content(store: Store, session_id: str, at: datetime) -> bool:
    """Whether the store would keep content of this session now (not under ZDR, not deleted or expired)."""
    with store.read() as db:
        try:
            _writable(_session(db, session_id), at, "content")
        except ContentRefused:
            return False
    return True


def put_agent_state(store: Store, session_id: str, data: bytes, at: datetime, *, turn: int) -> None:
    """Keep the agent's state directory (an archive) as session content: sealed under the session's key, refused
    like any content under ZDR, replacing the state kept before (one current state a session, not one a turn)."""
    if len(data) > MAX_CONTENT_BYTES:
        raise Invalid(f"the agent's state is {len(data)} bytes; at most {MAX_CONTENT_BYTES} are kept")
    with store.write() as db:
        row = _session(db, session_id)
        _writable(row, at, "agent state")
        db.execute(delete(ContentItem).where(ContentItem.session_id == session_id, ContentItem.kind == AGENT_STATE))
        _seal_item(store, db, session_id, session_id, AGENT_STATE, turn, data, at)
        ledger.audit_content(store, db, session_id, at, kind=AGENT_STATE, turn=turn, size=len(data))


def read_agent_state(store: Store, session_id: str) -> bytes | None:
    """The agent state kept last (None: none kept)."""
    with store.read() as db:
        row = _session(db, session_id)
        if row.state != "active":
            raise NotFound(f"session {session_id} is {row.state}: its content is gone")
        query = select(ContentItem).where(ContentItem.session_id == session_id, ContentItem.kind == AGENT_STATE)
        item = db.scalars(query.order_by(ContentItem.id.desc()).limit(1)).first()
        if item is None:
            return None
        data_key = _key(store, db, session_id, item.created_at, create=False)
        aad = _aad(session_id, session_id, AGENT_STATE, item.turn)
        return unseal(data_key, item.nonce, item.ciphertext, aad, f"the agent state of session {session_id}")
