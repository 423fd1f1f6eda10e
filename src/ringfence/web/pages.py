"""The console's pages: sessions, one session (live output, code change, branch, egress timeline, data flow),
privacy settings, environments, and the organization admin's page. Server-rendered (Jinja2), a little
JavaScript for the live output and confirmations; every form carries the CSRF token.

Owns: routes under /ui and what each page shows. Decisions come from the store and the policy (never decided
here); sessions are started, prompted, ended and deleted through the same session manager as the API.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from sqlalchemy import func, select

from ringfence import access
from ringfence.audit.table import audit_records
from ringfence.egress.rules import RuleError
from ringfence.live import turn_events
from ringfence.policy import PolicyError
from ringfence.policy.calendar import format_time
from ringfence.sandbox import SandboxError
from ringfence.sandbox.spec import Limits, format_size
from ringfence.sessions.environments import DEFAULT, DEFAULT_NAME, EnvironmentSettings, check_name, resolve_environment
from ringfence.sessions.manager import Caller, SessionError, SessionManager
from ringfence.store import accounts, content, environments, ledger
from ringfence.store.crypto import CryptoError
from ringfence.store.db import Store
from ringfence.store.errors import NotFound, StoreError
from ringfence.store.models import ApiKey, Organization, Repository, Session, User
from ringfence.web import signin
from ringfence.web.conversation import conversation
from ringfence.web.dataflow import flows, human_bytes, permits_of, render_svg
from ringfence.web.diff import render_diff

router = APIRouter(prefix="/ui", include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
templates.env.filters["bytes"] = human_bytes
templates.env.filters["when"] = lambda value: "" if value is None else format_time(value)[:16].replace("T", " ")
# The statement a consumer reads next to the training switch: POLICY.md's words on what the switch changes.
TRAINING_STATEMENT = [
    "On: sessions you start or resume while it is on may be used to train models, and are kept 5 years from their "
    "last activity.",
    "Off: no session is used for training from the moment you turn it off, even sessions from when it was on; "
    "stored sessions are kept at most 30 days from the change.",
    "Turning it on again does not make older sessions eligible or lengthen their retention until you resume them.",
    "You may delete any session at any time; its content becomes unreadable at once.",
]


class _Viewer:
    def __init__(self, user: User, key: ApiKey) -> None:
        self.user, self.key = user, key

    @property
    def org(self) -> str:
        """The organization of an admin (routes reach it only through `org_admin_form`)."""
        if self.user.org_id is None:
            raise NotOrgAdmin("this needs an organization admin")
        return self.user.org_id

    @property
    def manages_account(self) -> bool:
        try:
            access.managed_account(self.user)
        except access.Forbidden:
            return False
        return True


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _now(request: Request) -> datetime:
    clock: Callable[[], datetime] = request.app.state.clock
    return clock()


def _manager(request: Request) -> SessionManager | None:
    return getattr(request.app.state, "sessions", None)


def _viewer(request: Request) -> _Viewer | None:
    found = signin.signed_in(request, _store(request))
    return None if found is None else _Viewer(*found)


class SignedOut(Exception):
    """No valid console cookie: pages send the browser to sign in; the live-output stream and the SVG answer 401."""


class NotOrgAdmin(Exception):
    """An organization admin's form sent by someone else: back to the organization page, saying so."""


def signed_in_viewer(request: Request) -> _Viewer:
    viewer = _viewer(request)
    if viewer is None:
        raise SignedOut()
    return viewer


async def form_viewer(request: Request) -> _Viewer:
    """The signed-in user behind a form, once its CSRF token is checked (every POST of the console)."""
    viewer = signed_in_viewer(request)
    form = await request.form()
    sent = form.get(signin.CSRF_FIELD)
    signin.check_csrf(request, sent if isinstance(sent, str) else None)
    return viewer


def org_admin_form(viewer: Annotated[_Viewer, Depends(form_viewer)]) -> _Viewer:
    if not access.is_org_admin(viewer.user, viewer.user.org_id):
        raise NotOrgAdmin("this needs an organization admin")
    return viewer


def answer_signed_out(request: Request, _: Exception) -> Response:
    if request.url.path.endswith(("/prompt", "/dataflow.svg")):  # fetched by a script, or embedded: no page
        return Response("sign in first", status_code=401)
    return _login()


def answer_not_org_admin(request: Request, exc: Exception) -> Response:
    return _back(request, "/ui/org", error=str(exc))


Viewer = Annotated[_Viewer, Depends(signed_in_viewer)]
FormViewer = Annotated[_Viewer, Depends(form_viewer)]
OrgAdminForm = Annotated[_Viewer, Depends(org_admin_form)]


def _page(request: Request, viewer: _Viewer, name: str, status: int = 200, **values: Any) -> HTMLResponse:
    shown = signin.flash(request) if request.query_params.get("flash") else None
    if shown is not None:
        values.setdefault(shown[0], shown[1])
    page = templates.TemplateResponse(
        request,
        name,
        {"viewer": viewer, "csrf": signin.csrf_token(request), "sandboxes": _manager(request) is not None, **values},
        status_code=status,
    )
    if request.cookies.get(signin.FLASH):
        page.delete_cookie(signin.FLASH, path="/ui")
    return page


def _back(request: Request, path: str, *, error: str | None = None, notice: str | None = None) -> Response:
    """Back to a console page, with a message for it in a signed cookie; the address says only that there is one
    (`?flash=error` or `?flash=notice`), never its words."""
    kind, text = ("error", error) if error else ("notice", notice) if notice else (None, None)
    if kind is None or text is None:
        return RedirectResponse(path, status_code=303)
    response = RedirectResponse(f"{path}?flash={kind}", status_code=303)
    signin.set_flash(response, request, kind, text)
    return response


def _login() -> RedirectResponse:
    return RedirectResponse("/ui/login", status_code=303)


# Refusals a page shows by their own words; anything else is a fault, raised to the server's error handling.
_REFUSALS = (StoreError, PolicyError, RuleError, SessionError, SandboxError, CryptoError)


def _problem(exc: Exception) -> str:
    if not isinstance(exc, _REFUSALS):
        raise exc
    return exc.detail if isinstance(exc, PolicyError) else str(exc)


# --- sign in -------------------------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "login.html", {"error": None})


@router.post("/login")
def login(request: Request, token: str = Form(...)) -> Response:
    if not signin.same_site(request):  # login CSRF: another site signing this browser in as someone else
        return templates.TemplateResponse(
            request, "login.html", {"error": "sign in from this console's own page"}, status_code=403
        )
    found = accounts.authenticate(_store(request), token.strip())
    if found is None:
        return templates.TemplateResponse(
            request, "login.html", {"error": "that token is unknown, malformed or revoked"}, status_code=401
        )
    response = RedirectResponse("/ui/", status_code=303)
    signin.sign_in(response, request, token.strip())
    return response


@router.post("/logout")
def logout(request: Request, csrf: str = Form("")) -> Response:
    signin.check_csrf(request, csrf)
    response = _login()
    signin.sign_out(response)
    return response


# --- sessions ------------------------------------------------------------------------------------------------


def _decisions(store: Store, account_id: str, at: datetime) -> dict[str, Any]:
    with store.read() as db:
        return ledger.decisions(store, db, account_id, at).sessions


PAGE_SIZE = 100  # sessions per page of the list, newest first


@router.get("/", response_class=HTMLResponse)
def sessions_page(request: Request, viewer: Viewer, page: int = 1) -> Response:
    store, now = _store(request), _now(request)
    page = max(page, 1)
    mine = Session.user_id == viewer.user.id
    with store.read() as db:
        rows = db.scalars(
            select(Session).where(mine, Session.state == "active").order_by(Session.created_at.desc())
            .limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)
        ).all()  # fmt: skip
        total = db.scalar(select(func.count()).select_from(Session).where(mine, Session.state == "active")) or 0
        gone = db.scalar(select(func.count()).select_from(Session).where(mine, Session.state != "active")) or 0
        repos = {r.id: r for r in db.scalars(select(Repository).where(Repository.user_id == viewer.user.id))}
    decided = _decisions(store, viewer.user.account_id, now)
    manager = _manager(request)
    active = [
        {
            "row": row,
            "repository": repos.get(row.repository_id or ""),
            "decision": decided.get(row.id),
            "running": manager is not None and row.id in manager.live,
        }
        for row in rows
    ]
    envs = environments.list_environments(store, viewer.user.account_id)
    pages = max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1)
    return _page(request, viewer, "sessions.html", sessions=active, gone=gone, repositories=list(repos.values()),
                 environments=envs, has_default=any(e.name == DEFAULT_NAME for e in envs), page=page, pages=pages,
                 total=total)  # fmt: skip


@router.post("/sessions")
async def start_session(
    request: Request, viewer: FormViewer, repository_id: str = Form(...), environment: str = Form(DEFAULT_NAME)
) -> Response:
    manager = _manager(request)
    if manager is None:
        return _back(request, "/ui/", error="this server runs no sandboxes: sessions are not available here")
    try:
        env, env_id = resolve_environment(_store(request), viewer.user, environment)
        live = await manager.start(Caller(viewer.user.id, viewer.key.id), repository_id, env, environment_id=env_id)
    except Exception as exc:  # every refusal is shown on the page, by its own words
        return _back(request, "/ui/", error=_problem(exc))
    return _back(request, f"/ui/sessions/{live.id}", notice=f"session started on branch {live.branch}")


def _own(request: Request, viewer: _Viewer, session_id: str) -> Session:
    with _store(request).read() as db:
        row = db.get(Session, session_id)
    return access.own_session(viewer.user, row, session_id)


def _records(store: Store, session_ids: list[str], limit: int = 2000) -> list[dict[str, Any]]:
    if not session_ids:
        return []
    with store.read() as db:
        rows = db.execute(
            select(audit_records.c.seq, audit_records.c.at, audit_records.c.kind, audit_records.c.data)
            .where(audit_records.c.subject.in_(session_ids))
            .where(audit_records.c.kind.in_(("egress.connection", "gateway.request")))
            .order_by(audit_records.c.seq.desc())
            .limit(limit)
        ).all()
    return [{"seq": r.seq, "at": r.at, "kind": r.kind, **json.loads(r.data)} for r in reversed(rows)]


def _settings_of(store: Store, account_id: str, environment_id: str | None) -> dict[str, Any] | None:
    if environment_id is None:
        return DEFAULT.model_dump()
    try:
        return environments.find_environment(store, account_id, environment_id).settings
    except NotFound:
        return None


@router.get("/sessions/{session_id}", response_class=HTMLResponse)
def session_page(request: Request, viewer: Viewer, session_id: str) -> Response:
    store = _store(request)
    try:
        row = _own(request, viewer, session_id)
    except NotFound as exc:
        return _page(request, viewer, "error.html", status=404, message=str(exc))
    kept = content.read_content(store, session_id) if row.state == "active" else []
    changes = [item for item in kept if item.kind == "code_change"]
    diff, cut = render_diff(changes[-1].text) if changes else ([], False)
    records = _records(store, [session_id])
    with store.read() as db:
        repo = db.get(Repository, row.repository_id) if row.repository_id else None
    hosts = [repo.host] if repo is not None else []
    settings = _settings_of(store, viewer.user.account_id, row.environment_id)
    picture = render_svg(f"session {session_id}", flows(records, repository_hosts=hosts), permits_of(settings))
    decided = _decisions(store, viewer.user.account_id, _now(request)).get(session_id)
    pushed = [r for r in records if r.get("kind") == "gateway.request" and r.get("service") == "git-receive-pack"
              and r.get("operation") == "rpc" and r.get("decision") == "allow"]  # fmt: skip
    manager = _manager(request)
    return _page(request, viewer, "session.html", session=row, repository=repo, kept=kept, diff=diff, cut=cut,
                 turns=conversation(kept),
                 records=records, picture=picture, decision=decided, pushed=bool(pushed),
                 running=manager is not None and session_id in manager.live)  # fmt: skip


@router.post("/sessions/{session_id}/prompt")
async def prompt(request: Request, viewer: FormViewer, session_id: str, text: str = Form(...)) -> Response:
    _own(request, viewer, session_id)
    manager = _manager(request)
    if manager is None:
        return Response("this server runs no sandboxes", status_code=503)
    events = await turn_events(manager, session_id, text)
    return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-store"})


@router.post("/sessions/{session_id}/end")
async def end_session(request: Request, viewer: FormViewer, session_id: str) -> Response:
    _own(request, viewer, session_id)
    manager = _manager(request)
    try:
        if manager is None:
            raise NotFound("this server runs no sandboxes")
        pushed = await manager.end(session_id)
    except Exception as exc:
        return _back(request, f"/ui/sessions/{session_id}", error=_problem(exc))
    said = "" if pushed.changed else " (nothing changed)"
    return _back(
        request, f"/ui/sessions/{session_id}", notice=f"pushed {pushed.commit[:12]} to ringfence/{session_id}{said}"
    )


@router.post("/sessions/{session_id}/delete")
async def delete_session(request: Request, viewer: FormViewer, session_id: str, confirm: str = Form("")) -> Response:
    row = _own(request, viewer, session_id)
    if confirm != "yes":  # without JavaScript's dialog: ask on a page of its own
        return _page(request, viewer, "confirm_delete.html", session=row)
    manager = _manager(request)
    try:
        if manager is not None:
            await manager.delete(session_id, actor=viewer.user.id)
        else:
            content.delete_session(_store(request), session_id, _now(request), actor=viewer.user.id)
    except Exception as exc:
        return _back(request, "/ui/", error=_problem(exc))
    return _back(request, "/ui/", notice=f"session {session_id} deleted: its content is unreadable")


@router.post("/sessions/{session_id}/feedback")
def feedback(request: Request, viewer: FormViewer, session_id: str, comment: str = Form(...)) -> Response:
    _own(request, viewer, session_id)
    store = _store(request)
    try:
        made = content.send_feedback(store, session_id, comment, _now(request), actor=viewer.user.id)
    except Exception as exc:
        return _back(request, f"/ui/sessions/{session_id}", error=_problem(exc))
    until = format_time(made.delete_after)[:10]
    return _back(request, f"/ui/sessions/{session_id}", notice=f"feedback sent with the transcript; kept until {until}")


@router.post("/sessions/{session_id}/rating")
def rating(request: Request, viewer: FormViewer, session_id: str, value: str = Form(...)) -> Response:
    _own(request, viewer, session_id)
    if value not in ("1", "2", "3", "dismiss"):
        return _back(request, f"/ui/sessions/{session_id}", error=f"rating {value!r} is not 1, 2, 3 or dismiss")
    try:
        given: int | str = value if value == "dismiss" else int(value)
        content.rate(_store(request), session_id, given, _now(request), actor=viewer.user.id)
    except Exception as exc:
        return _back(request, f"/ui/sessions/{session_id}", error=_problem(exc))
    return _back(request, f"/ui/sessions/{session_id}", notice=f"rated {value}: only the rating is stored")


# --- data flow -----------------------------------------------------------------------------------------------


def _scope(
    request: Request, viewer: _Viewer, session: str | None, environment: str | None, org: bool
) -> tuple[str, list[str], dict[str, Any] | None]:
    """What a data-flow picture covers: (subject, its session ids, the settings it is compared with)."""
    store, user = _store(request), viewer.user
    if session:
        row = _own(request, viewer, session)
        return f"session {session}", [session], _settings_of(store, user.account_id, row.environment_id)
    with store.read() as db:
        query = select(Session.id).where(Session.account_id == user.account_id)
        if not (org and access.is_org_admin(user, user.org_id)):
            query = query.where(Session.user_id == user.id)
        if environment:
            env = environments.find_environment(store, user.account_id, environment)
            ids = list(db.scalars(query.where(Session.environment_id == env.id)))
            return f"environment {env.name}", ids, env.settings
        ids = list(db.scalars(query))
    subject = "organization" if org and access.is_org_admin(user, user.org_id) else "all your sessions"
    return subject, ids, None if org else DEFAULT.model_dump()


@router.get("/dataflow", response_class=HTMLResponse)
def dataflow_page(
    request: Request, viewer: Viewer, session: str | None = None, environment: str | None = None, org: bool = False
) -> Response:
    try:
        subject, ids, settings = _scope(request, viewer, session, environment, org)
    except NotFound as exc:
        return _page(request, viewer, "error.html", status=404, message=str(exc))
    found = flows(_records(_store(request), ids, limit=20000))
    permits = permits_of(settings) if settings is not None else ["each session: its own environment's policy"]
    envs = environments.list_environments(_store(request), viewer.user.account_id)
    return _page(request, viewer, "dataflow.html", subject=subject, picture=render_svg(subject, found, permits),
                 flows=found, environments=envs, query=request.url.query)  # fmt: skip


@router.get("/dataflow.svg")
def dataflow_svg(
    request: Request, viewer: Viewer, session: str | None = None, environment: str | None = None, org: bool = False
) -> Response:
    subject, ids, settings = _scope(request, viewer, session, environment, org)
    permits = permits_of(settings) if settings is not None else ["each session: its own environment's policy"]
    picture = render_svg(subject, flows(_records(_store(request), ids, limit=20000)), permits)
    return Response(picture, media_type="image/svg+xml", headers={"Content-Disposition": "inline"})


# --- privacy -------------------------------------------------------------------------------------------------


@router.get("/privacy", response_class=HTMLResponse)
def privacy_page(request: Request, viewer: Viewer) -> Response:
    store = _store(request)
    consumer = viewer.user.org_id is None
    history = accounts.settings_history(store, viewer.user.account_id)
    with store.read() as db:
        rows = db.scalars(
            select(Session).where(Session.user_id == viewer.user.id, Session.state == "active")
            .order_by(Session.delete_after)
        ).all()  # fmt: skip
        org = db.get(Organization, viewer.user.org_id) if viewer.user.org_id else None
    decided = _decisions(store, viewer.user.account_id, _now(request))
    return _page(request, viewer, "privacy.html", consumer=consumer, history=history, sessions=rows, org=org,
                 decided=decided, statement=TRAINING_STATEMENT)  # fmt: skip


@router.post("/privacy/training")
def set_training(request: Request, viewer: FormViewer, enabled: str = Form(...)) -> Response:
    try:
        accounts.set_training(_store(request), viewer.user.id, enabled == "on", _now(request), actor=viewer.user.id)
    except Exception as exc:
        return _back(request, "/ui/privacy", error=_problem(exc))
    return _back(request, "/ui/privacy", notice=f"training turned {'on' if enabled == 'on' else 'off'}")


# --- environments and the organization -----------------------------------------------------------------------


@router.get("/environments", response_class=HTMLResponse)
def environments_page(request: Request, viewer: Viewer) -> Response:
    envs = environments.list_environments(_store(request), viewer.user.account_id)
    most: Limits = request.app.state.ceiling
    ceiling = {
        "memory": "no limit" if most.memory_bytes is None else format_size(most.memory_bytes),
        "workspace": "no limit" if most.workspace_bytes is None else format_size(most.workspace_bytes),
        "timeout_seconds": "no limit" if most.timeout_seconds is None else f"{most.timeout_seconds:g}",
    }
    return _page(request, viewer, "environments.html", environments=envs, ceiling=ceiling)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]


@router.post("/environments")
def save_environment(
    request: Request,
    viewer: FormViewer,
    name: str = Form(...),
    network: str = Form("trusted"),
    allow: str = Form(""),
    deny: str = Form(""),
    agent: str = Form(""),
    setup: str = Form(""),
    setup_network: str = Form("trusted"),
    setup_allow: str = Form(""),
    telemetry: str = Form(""),
    memory: str = Form(""),
    workspace: str = Form(""),
) -> Response:
    if not viewer.manages_account:
        return _back(
            request, "/ui/environments", error=f"only an admin of organization {viewer.user.org_id} manages these"
        )
    raw: dict[str, Any] = {
        "network": network,
        "allow": _lines(allow),
        "deny": _lines(deny),
        "setup_network": setup_network,
        "setup_allow": _lines(setup_allow),
        "telemetry": telemetry == "on",
        "limits": {"memory": memory.strip() or None, "workspace": workspace.strip() or None},
    }
    if agent.strip():
        raw["agent"] = agent.strip()
    if setup.strip():
        raw["setup"] = setup.replace("\r\n", "\n")
    store, now = _store(request), _now(request)
    try:
        check_name(name)
        checked = EnvironmentSettings.model_validate(raw)
        checked.check_operator(request.app.state.ceiling, request.app.state.network_modes)  # as the API does
        settings = checked.model_dump()
        existing = {e.name for e in environments.list_environments(store, viewer.user.account_id)}
        if name in existing:
            environments.replace_environment(store, viewer.user.account_id, name, settings, now, actor=viewer.user.id)
        else:
            environments.create_environment(store, viewer.user.account_id, name, settings, now, actor=viewer.user.id)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors())
        return _back(request, "/ui/environments", error=problems)
    except ValueError as exc:
        return _back(request, "/ui/environments", error=str(exc))
    except Exception as exc:
        return _back(request, "/ui/environments", error=_problem(exc))
    return _back(request, "/ui/environments", notice=f"environment {name} saved")


@router.post("/environments/{name}/delete")
def delete_environment(request: Request, viewer: FormViewer, name: str) -> Response:
    if not viewer.manages_account:
        return _back(
            request, "/ui/environments", error=f"only an admin of organization {viewer.user.org_id} manages these"
        )
    try:
        environments.delete_environment(_store(request), viewer.user.account_id, name, _now(request),
                                        actor=viewer.user.id)  # fmt: skip
    except Exception as exc:
        return _back(request, "/ui/environments", error=_problem(exc))
    return _back(request, "/ui/environments", notice=f"environment {name} deleted")


@router.get("/org", response_class=HTMLResponse)
def org_page(request: Request, viewer: Viewer) -> Response:
    org_id = viewer.user.org_id
    if org_id is None or not access.is_org_admin(viewer.user, org_id):
        return _page(request, viewer, "error.html", status=403, message="this page is for organization admins")
    store = _store(request)
    with store.read() as db:
        org = db.get(Organization, org_id)
        members = db.scalars(select(User).where(User.org_id == org_id).order_by(User.name)).all()
        keys = db.scalars(
            select(ApiKey).where(ApiKey.user_id.in_([m.id for m in members])).order_by(ApiKey.created_at)
        ).all()
        sessions = db.scalars(
            select(Session).where(Session.account_id == org_id).order_by(Session.created_at.desc()).limit(200)
        ).all()
    plan = store.rules.plan(org.plan) if org is not None else None
    checks: dict[str, Any] = getattr(request.app.state, "audit_checks", {})
    return _page(request, viewer, "org.html", org=org, plan=plan, members=members, keys=keys, sessions=sessions,
                 history=accounts.settings_history(store, org_id), check=checks.get("last"),
                 environments=environments.list_environments(store, org_id))  # fmt: skip


@router.post("/org/switches")
def org_switches(request: Request, viewer: OrgAdminForm, switch: str = Form(...), enabled: str = Form(...)) -> Response:
    try:
        accounts.set_org_switch(_store(request), viewer.org, switch, enabled == "on", _now(request),
                                actor=viewer.user.id)  # fmt: skip
    except Exception as exc:
        return _back(request, "/ui/org", error=_problem(exc))
    return _back(request, "/ui/org", notice=f"{switch.upper()} turned {'on' if enabled == 'on' else 'off'}")


@router.post("/org/verify")
def verify_audit(request: Request, viewer: OrgAdminForm) -> Response:
    store = _store(request)
    result = store.audit.verify(store.engine)
    if not hasattr(request.app.state, "audit_checks"):
        request.app.state.audit_checks = {}
    request.app.state.audit_checks["last"] = {"at": _now(request), "result": result}
    if result.ok:
        return _back(request, "/ui/org", notice=f"audit chain intact: {result.count} records")
    return _back(request, "/ui/org", error=f"audit chain broken: {result.problem}")


def _member(request: Request, org_id: str, user_id: str) -> User:
    with _store(request).read() as db:
        member = db.get(User, user_id)
    if member is None or member.org_id != org_id:
        raise NotFound(f"no member {user_id!r} in this organization")
    return member


@router.post("/org/members")
def add_member(request: Request, viewer: OrgAdminForm, name: str = Form(...), admin: str = Form("")) -> Response:
    org_id = viewer.org
    try:
        made = accounts.create_user(_store(request), name, _now(request), actor=viewer.user.id, org_id=org_id,
                                    org_admin=admin == "on")  # fmt: skip
    except Exception as exc:
        return _back(request, "/ui/org", error=_problem(exc))
    return _back(request, "/ui/org", notice=f"member {made.name} added ({made.id}); make them a token below")


@router.post("/org/members/{user_id}/tokens", response_class=HTMLResponse)
def make_token(request: Request, viewer: OrgAdminForm, user_id: str, name: str = Form(...)) -> Response:
    """The token is shown once, on this page only (never in a redirect's address, never stored in clear)."""
    org_id = viewer.org
    try:
        member = _member(request, org_id, user_id)
        access.check_mint_key(viewer.user, member)  # the one rule, as the API applies it
        key, token = accounts.create_api_key(_store(request), member.id, name, _now(request), actor=viewer.user.id)
    except Exception as exc:
        return _back(request, "/ui/org", error=_problem(exc))
    page = _page(request, viewer, "token.html", member=member, key=key, token=token.reveal())
    page.headers["Cache-Control"] = "no-store"
    return page


@router.post("/org/members/{user_id}/tokens/{key_id}/revoke")
def revoke_token(request: Request, viewer: OrgAdminForm, user_id: str, key_id: str) -> Response:
    org_id = viewer.org
    try:
        member = _member(request, org_id, user_id)
        access.check_revoke_key(viewer.user, member)
        accounts.revoke_api_key(_store(request), member.id, key_id, _now(request), actor=viewer.user.id)
    except Exception as exc:
        return _back(request, "/ui/org", error=_problem(exc))
    return _back(request, "/ui/org", notice=f"token {key_id} of {member.name} revoked")
