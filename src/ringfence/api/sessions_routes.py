"""The REST routes of sessions: start, prompt (the agent's output as server-sent events), end, delete, list, show.

A user sees and acts on their own sessions only. The session manager lives in the server's event loop
(app.state.sessions); without one (a server started without sandboxes) these routes answer 503.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import select

from ringfence import access
from ringfence.api.auth import CurrentPrincipal, CurrentStore, Principal
from ringfence.api.errors import COMMON_REFUSALS, Unavailable, describe, refusals
from ringfence.audit.table import audit_records
from ringfence.live import sse, turn_events
from ringfence.policy import format_time
from ringfence.sessions.environments import DEFAULT_NAME, resolve_environment
from ringfence.sessions.manager import Caller, LiveSession, Progress, SessionManager
from ringfence.store import content
from ringfence.store.db import Store
from ringfence.store.errors import Invalid, NotFound
from ringfence.store.models import Session

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["sessions"], responses=refusals(*COMMON_REFUSALS, 502, 503))


class SessionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    repository_id: str = Field(min_length=1, max_length=40)
    environment: str = Field(default=DEFAULT_NAME, min_length=1, max_length=100)


class ResumeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    environment: str | None = Field(default=None, min_length=1, max_length=100)  # None: the session's own


class PromptIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=100_000)


def _manager(request: Request) -> SessionManager:
    manager: SessionManager | None = getattr(request.app.state, "sessions", None)
    if manager is None:
        raise Unavailable("this server runs no sandboxes: sessions are not available here")
    return manager


def _own(store: CurrentStore, session_id: str, who: CurrentPrincipal) -> Session:
    with store.read() as db:
        row = db.get(Session, session_id)
    return access.own_session(who.user, row, session_id)  # another user's session is not even confirmed to exist


def _out(row: Session, manager: SessionManager | None) -> dict[str, Any]:
    live = manager.live.get(row.id) if manager is not None else None
    return {
        "id": row.id,
        "user_id": row.user_id,
        "state": row.state,
        "running": live is not None,
        "interrupted": row.interrupted_at is not None and live is None,
        "environment_id": row.environment_id,
        "repository_id": row.repository_id,
        "branch": f"ringfence/{row.id}",
        "zdr": row.zdr,
        "created_at": format_time(row.created_at),
        "last_activity_at": format_time(row.last_activity_at),
        "retention_rule": row.retention_rule,
        "delete_after": format_time(row.delete_after) if row.delete_after else None,
        "turns": live.turn if live is not None else row.turns,
        "backend": row.backend,
        "status": status_of(row, live is not None),
    }


def status_of(row: Session, running: bool) -> str:
    """Where the session is, in one word: running (a sandbox is live), interrupted (the server stopped under it;
    resumable), stored (ended: its content is kept as the policy says), deleted or expired."""
    if row.state != "active":
        return row.state
    if running:
        return "running"
    return "interrupted" if row.interrupted_at is not None else "stored"


def _wants_stream(request: Request) -> bool:
    return "text/event-stream" in request.headers.get("accept", "")


def _launch(
    request: Request, who: Principal, store: Store, launch: Callable[[Progress], Awaitable[LiveSession]]
) -> Awaitable[dict[str, Any]] | StreamingResponse:
    """Start or resume: one JSON answer, or (Accept: text/event-stream) its steps as they happen (`progress`
    events: sandbox, clone with git's own progress lines, setup with the script's output, ready), then the
    session (`session`) or what failed (`error`). A client that goes away does not stop the launch."""
    manager = _manager(request)

    async def answer() -> dict[str, Any]:
        live = await launch(lambda step, detail: None)
        return _out(_own(store, live.id, who), manager)

    if not _wants_stream(request):
        return answer()
    steps: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def run() -> None:
        try:
            live = await launch(
                lambda step, detail: steps.put_nowait(sse("progress", {"step": step, "detail": detail}))
            )
            steps.put_nowait(sse("session", _out(_own(store, live.id, who), manager)))
        except Exception as exc:  # every failure becomes the stream's last event
            status, code, message = describe(exc) or (500, "internal", "internal error")
            if status == 500:
                log.exception("session launch failed")
            steps.put_nowait(sse("error", {"status": status, "code": code, "message": message}))
        finally:
            steps.put_nowait(None)

    task = asyncio.get_running_loop().create_task(run())
    _LAUNCHES.add(task)
    task.add_done_callback(_LAUNCHES.discard)

    async def events() -> AsyncIterator[bytes]:
        while (event := await steps.get()) is not None:
            yield event

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


_LAUNCHES: set[asyncio.Task[None]] = set()  # launches whose client may have gone: kept until they finish


@router.post(
    "/sessions",
    status_code=201,
    summary="Start a session on one of your repositories, in one of your account's environments",
    response_model=None,
)
async def start(
    body: SessionIn, who: CurrentPrincipal, store: CurrentStore, request: Request
) -> dict[str, Any] | StreamingResponse:
    env, env_id = resolve_environment(store, who.user, body.environment)

    def launch(progress: Progress) -> Awaitable[LiveSession]:
        return _manager(request).start(
            Caller(who.id, who.key.id), body.repository_id, env, environment_id=env_id, progress=progress
        )

    launched = _launch(request, who, store, launch)
    return launched if isinstance(launched, StreamingResponse) else await launched


@router.post(
    "/sessions/{session_id}/resume",
    summary="Resume an ended or interrupted session in a new sandbox",
    response_model=None,
)
async def resume(
    session_id: str, body: ResumeIn, who: CurrentPrincipal, store: CurrentStore, request: Request
) -> dict[str, Any] | StreamingResponse:
    row = _own(store, session_id, who)
    if body.environment is not None:
        env, _ = resolve_environment(store, who.user, body.environment)
    elif row.environment_id is not None:
        try:
            env, _ = resolve_environment(store, who.user, row.environment_id)
        except NotFound:
            raise Invalid(
                f"the environment session {session_id} ran in was deleted; resume it in another one"
            ) from None
    else:
        env, _ = resolve_environment(store, who.user, DEFAULT_NAME)

    def launch(progress: Progress) -> Awaitable[LiveSession]:
        return _manager(request).resume(session_id, who.id, env, progress=progress)

    launched = _launch(request, who, store, launch)
    return launched if isinstance(launched, StreamingResponse) else await launched


@router.get("/sessions", summary="Your sessions")
def list_sessions(who: CurrentPrincipal, store: CurrentStore, request: Request) -> list[dict[str, Any]]:
    with store.read() as db:
        rows = db.scalars(select(Session).where(Session.user_id == who.id).order_by(Session.created_at)).all()
    return [_out(row, getattr(request.app.state, "sessions", None)) for row in rows]


@router.get("/organizations/{org_id}/sessions", summary="An organization's sessions (admins: metadata only)")
def org_sessions(org_id: str, who: CurrentPrincipal, store: CurrentStore, request: Request) -> list[dict[str, Any]]:
    """Metadata only: an admin sees who ran what, when, and what is kept until when; never prompts, outputs or
    code changes, which stay readable by their user alone."""
    who.require_org_admin(org_id)
    with store.read() as db:
        rows = db.scalars(select(Session).where(Session.account_id == org_id).order_by(Session.created_at)).all()
    return [_out(row, getattr(request.app.state, "sessions", None)) for row in rows]


@router.get("/sessions/{session_id}/content", summary="What is kept of one of your sessions: prompts, outputs, changes")
def session_content(session_id: str, who: CurrentPrincipal, store: CurrentStore) -> list[dict[str, Any]]:
    row = _own(store, session_id, who)
    if row.state != "active":
        raise NotFound(f"session {session_id} is {row.state}: its content is gone")
    return [
        {"kind": item.kind, "turn": item.turn, "text": item.text, "created_at": format_time(item.created_at)}
        for item in content.read_content(store, session_id)
    ]


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
    return await prompt_stream(manager, session_id, body.text)


async def prompt_stream(manager: SessionManager, session_id: str, text: str) -> StreamingResponse:
    """One agent turn as server-sent events (ringfence.sessions.live)."""
    events = await turn_events(manager, session_id, text)  # refusals become HTTP errors before the stream starts
    return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-store"})


@router.post("/sessions/{session_id}/end", summary="Push the session branch and end the session")
async def end(session_id: str, who: CurrentPrincipal, store: CurrentStore, request: Request) -> dict[str, Any]:
    manager = _manager(request)
    _own(store, session_id, who)
    pushed = await manager.end(session_id)
    return {**_out(_own(store, session_id, who), manager), "pushed": pushed.commit, "changed": pushed.changed}


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
    """Either a comment (the service attaches the session's kept turns as the transcript) or a whole transcript."""

    model_config = ConfigDict(extra="forbid")
    comment: str | None = Field(None, min_length=1, max_length=64 * 1024)
    transcript: str | None = Field(None, min_length=1, max_length=16 * 2**20)

    @model_validator(mode="after")
    def _one_form(self) -> FeedbackIn:
        if (self.comment is None) == (self.transcript is None):
            raise ValueError(
                "give either 'comment' (the session's kept transcript is attached to it) or 'transcript', not both"
            )
        return self


class RatingIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # 1, 2, 3 or "dismiss": not "1"
    value: Literal[1, 2, 3, "dismiss"]

    @field_validator("value", mode="before")
    @classmethod
    def _an_integer_or_dismiss(cls, value: Any) -> Any:
        # true and 1.0 equal 1 to Python, so the literal check alone would take them.
        if type(value) is not int and not isinstance(value, str):
            raise ValueError(f'a rating is 1, 2, 3 or "dismiss", not {type(value).__name__} {value!r}')
        return value


@router.post("/sessions/{session_id}/feedback", status_code=201, summary="Send feedback with the transcript")
def feedback(
    session_id: str, body: FeedbackIn, who: CurrentPrincipal, store: CurrentStore, request: Request
) -> dict[str, Any]:
    """The transcript is kept 5 years under its own key (POLICY.md); refused under zero data retention."""
    _own(store, session_id, who)
    at = request.app.state.clock()
    if body.comment is not None:
        made = content.send_feedback(store, session_id, body.comment, at, actor=who.id)
    else:
        assert body.transcript is not None
        made = content.add_feedback(store, session_id, body.transcript, at, actor=who.id)
    return {"id": made.id, "delete_after": format_time(made.delete_after)}


@router.post("/sessions/{session_id}/rating", status_code=204, summary="Rate a session: 1, 2, 3 or dismiss")
def rating(session_id: str, body: RatingIn, who: CurrentPrincipal, store: CurrentStore, request: Request) -> Response:
    """Only the rating is stored: nothing of the session's content."""
    _own(store, session_id, who)
    content.rate(store, session_id, body.value, request.app.state.clock(), actor=who.id)
    return Response(status_code=204)
