"""The REST routes of sessions: start, prompt (the agent's output as server-sent events), end, delete, list, show.

A user sees and acts on their own sessions only. The session manager lives in the server's event loop
(app.state.sessions); without one (a server started without sandboxes) these routes answer 503.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import select

from ringfence.api.auth import CurrentPrincipal, CurrentStore
from ringfence.api.errors import Unavailable
from ringfence.audit.table import audit_records
from ringfence.sandbox import Exit
from ringfence.sessions.manager import Environment, SessionManager
from ringfence.store import content
from ringfence.store.errors import NotFound
from ringfence.store.models import Session

router = APIRouter(prefix="/v1", tags=["sessions"])


class SessionIn(BaseModel):
    repository_id: str = Field(min_length=1, max_length=40)
    network: Literal["none", "trusted", "custom", "full"] = "trusted"
    allow: list[str] = Field(default_factory=list, max_length=500)
    deny: list[str] = Field(default_factory=list, max_length=500)
    telemetry: bool = True


class ResumeIn(BaseModel):
    network: Literal["none", "trusted", "custom", "full"] = "trusted"
    allow: list[str] = Field(default_factory=list, max_length=500)
    deny: list[str] = Field(default_factory=list, max_length=500)
    telemetry: bool = True


class PromptIn(BaseModel):
    text: str = Field(min_length=1, max_length=100_000)


def _manager(request: Request) -> SessionManager:
    manager: SessionManager | None = getattr(request.app.state, "sessions", None)
    if manager is None:
        raise Unavailable("this server runs no sandboxes: sessions are not available here")
    return manager


def _own(store: CurrentStore, session_id: str, who: CurrentPrincipal) -> Session:
    with store.read() as db:
        row = db.get(Session, session_id)
    if row is None or row.user_id != who.id:
        raise NotFound(f"no session {session_id!r}")  # another user's session is not even confirmed to exist
    return row


def _out(row: Session, manager: SessionManager | None) -> dict[str, Any]:
    live = manager.live.get(row.id) if manager is not None else None
    return {
        "id": row.id,
        "state": row.state,
        "running": live is not None,
        "repository_id": row.repository_id,
        "branch": f"ringfence/{row.id}",
        "zdr": row.zdr,
        "created_at": row.created_at.isoformat(),
        "last_activity_at": row.last_activity_at.isoformat(),
        "retention_rule": row.retention_rule,
        "delete_after": row.delete_after.isoformat() if row.delete_after else None,
        "turns": live.turn if live is not None else None,
    }


@router.post("/sessions", status_code=201, summary="Start a session on one of your repositories")
async def start(body: SessionIn, who: CurrentPrincipal, store: CurrentStore, request: Request) -> dict[str, Any]:
    manager = _manager(request)
    env = Environment(network=body.network, allow=tuple(body.allow), deny=tuple(body.deny), telemetry=body.telemetry)
    live = await manager.start(who.id, body.repository_id, env)
    return _out(_own(store, live.id, who), manager)


@router.post("/sessions/{session_id}/resume", summary="Resume an ended or interrupted session in a new sandbox")
async def resume(
    session_id: str, body: ResumeIn, who: CurrentPrincipal, store: CurrentStore, request: Request
) -> dict[str, Any]:
    manager = _manager(request)
    _own(store, session_id, who)
    env = Environment(network=body.network, allow=tuple(body.allow), deny=tuple(body.deny), telemetry=body.telemetry)
    await manager.resume(session_id, who.id, env)
    return _out(_own(store, session_id, who), manager)


@router.get("/sessions", summary="Your sessions")
def list_sessions(who: CurrentPrincipal, store: CurrentStore, request: Request) -> list[dict[str, Any]]:
    with store.read() as db:
        rows = db.scalars(select(Session).where(Session.user_id == who.id).order_by(Session.created_at)).all()
    return [_out(row, getattr(request.app.state, "sessions", None)) for row in rows]


@router.get("/sessions/{session_id}", summary="One of your sessions")
def show(session_id: str, who: CurrentPrincipal, store: CurrentStore, request: Request) -> dict[str, Any]:
    return _out(_own(store, session_id, who), getattr(request.app.state, "sessions", None))


@router.post(
    "/sessions/{session_id}/prompts",
    summary="Give the agent a prompt; its output streams back as server-sent events (output, then exit)",
    response_class=StreamingResponse,
)
async def prompt(
    session_id: str, body: PromptIn, who: CurrentPrincipal, store: CurrentStore, request: Request
) -> StreamingResponse:
    manager = _manager(request)
    _own(store, session_id, who)
    stream = manager.prompt(session_id, body.text)
    first = await anext(stream)  # refusals (not running, deleted...) become HTTP errors before the stream starts

    async def events() -> AsyncIterator[bytes]:
        event: Any = first
        try:
            while True:
                if isinstance(event, Exit):
                    yield _sse("exit", {"code": event.code, "timed_out": event.timed_out})
                else:
                    yield _sse("output", {"stream": event.stream, "text": event.data.decode("utf-8", "replace")})
                try:
                    event = await anext(stream)
                except StopAsyncIteration:
                    return
        finally:
            await stream.aclose()  # a client that goes away ends the turn's command too

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


def _sse(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


@router.post("/sessions/{session_id}/end", summary="Push the session branch and end the session")
async def end(session_id: str, who: CurrentPrincipal, store: CurrentStore, request: Request) -> dict[str, Any]:
    manager = _manager(request)
    _own(store, session_id, who)
    commit = await manager.end(session_id)
    return {**_out(_own(store, session_id, who), manager), "pushed": commit}


@router.delete("/sessions/{session_id}", status_code=204, summary="Delete a session: its content is unreadable at once")
async def delete(session_id: str, who: CurrentPrincipal, store: CurrentStore, request: Request) -> Response:
    _own(store, session_id, who)
    manager = getattr(request.app.state, "sessions", None)
    if manager is not None:
        await manager.delete(session_id, actor=who.id)
    else:
        content.delete_session(store, session_id, request.app.state.clock(), actor=who.id)
    return Response(status_code=204)


@router.get("/sessions/{session_id}/egress", summary="What left the session: its egress and gateway audit records")
def egress(session_id: str, who: CurrentPrincipal, store: CurrentStore) -> list[dict[str, Any]]:
    _own(store, session_id, who)
    with store.read() as db:
        rows = db.execute(
            select(audit_records.c.seq, audit_records.c.at, audit_records.c.kind, audit_records.c.data)
            .where(audit_records.c.subject == session_id)
            .where(audit_records.c.kind.in_(("egress.connection", "gateway.request")))
            .order_by(audit_records.c.seq)
        ).all()
    return [{"seq": r.seq, "at": r.at, "kind": r.kind, **json.loads(r.data)} for r in rows]


class FeedbackIn(BaseModel):
    transcript: str = Field(min_length=1, max_length=16 * 2**20)


class RatingIn(BaseModel):
    value: Literal[1, 2, 3, "dismiss"]


@router.post("/sessions/{session_id}/feedback", status_code=201, summary="Send feedback with the transcript")
def feedback(
    session_id: str, body: FeedbackIn, who: CurrentPrincipal, store: CurrentStore, request: Request
) -> dict[str, Any]:
    """The transcript is kept 5 years under its own key (POLICY.md); refused under zero data retention."""
    _own(store, session_id, who)
    made = content.add_feedback(store, session_id, body.transcript, request.app.state.clock(), actor=who.id)
    return {"id": made.id, "delete_after": made.delete_after.isoformat()}


@router.post("/sessions/{session_id}/rating", status_code=204, summary="Rate a session: 1, 2, 3 or dismiss")
def rating(session_id: str, body: RatingIn, who: CurrentPrincipal, store: CurrentStore, request: Request) -> Response:
    """Only the rating is stored: nothing of the session's content."""
    _own(store, session_id, who)
    content.rate(store, session_id, body.value, request.app.state.clock(), actor=who.id)
    return Response(status_code=204)
