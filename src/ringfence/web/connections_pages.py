"""The console's connections page: the account's model providers and the user's repositories with their tokens.

Owns: `/ui/connections` (listing providers without keys, and the user's repositories and whether a token is
stored), and its forms: set or delete a provider (who manages the account: an organization's admins, a consumer
for their own), connect a repository with an optional token, replace a repository's token. Every form goes through
the same checks as the API (ringfence.sessions.connections). Keys and tokens are password fields, sealed by the
store, and never shown back.
"""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy import select

from ringfence import access
from ringfence.sessions import connections
from ringfence.store import accounts, providers
from ringfence.store.crypto import Secret
from ringfence.store.models import RepositoryCredential
from ringfence.web.pages import FormViewer, Viewer, _back, _now, _page, _problem, _store

router = APIRouter(prefix="/ui", include_in_schema=False)
PAGE = "/ui/connections"


@router.get("/connections")
def connections_page(request: Request, viewer: Viewer) -> Response:
    store = _store(request)
    repositories = accounts.list_repositories(store, viewer.user.id)
    with store.read() as db:
        ids = [r.id for r in repositories]
        tokens = set(
            db.scalars(select(RepositoryCredential.repository_id).where(RepositoryCredential.repository_id.in_(ids)))
        )
    return _page(
        request, viewer, "connections.html",
        providers=providers.list_providers(store, viewer.user.account_id),
        repositories=repositories, tokens=tokens,
    )  # fmt: skip


@router.post("/connections/providers")
async def set_provider(
    request: Request,
    viewer: FormViewer,
    name: str = Form(...),
    base_url: str = Form(...),
    api_key: str = Form(...),
    kind: str = Form(""),
) -> Response:
    try:
        await connections.set_model_provider(
            _store(request), request.app.state.dialer, viewer.user, viewer.user.account_id, name.strip(),
            kind or None, base_url.strip(), Secret(api_key.strip()), _now(request),
        )  # fmt: skip
    except Exception as exc:
        return _back(request, PAGE, error=_problem(exc))
    return _back(request, PAGE, notice=f"model provider {name.strip()} set (its key is sealed, never shown)")


@router.post("/connections/providers/{name}/delete")
def delete_provider(request: Request, viewer: FormViewer, name: str) -> Response:
    try:
        access.check_manage_providers(viewer.user, viewer.user.account_id)
        providers.delete_provider(_store(request), viewer.user.account_id, name, _now(request), actor=viewer.user.id)
    except Exception as exc:
        return _back(request, PAGE, error=_problem(exc))
    return _back(request, PAGE, notice=f"model provider {name} deleted")


@router.post("/connections/repositories")
async def connect_repository(
    request: Request,
    viewer: FormViewer,
    url: str = Form(...),
    token: str = Form(""),
    kind: str = Form("bearer"),
) -> Response:
    store = _store(request)
    try:
        made = await connections.connect_repository(
            store, request.app.state.dialer, viewer.user, url.strip(), _now(request)
        )
        if token.strip():
            connections.set_repository_credential(
                store, viewer.user, made.id, kind, Secret(token.strip()), _now(request)
            )
    except Exception as exc:
        return _back(request, PAGE, error=_problem(exc))
    said = " with its token (sealed)" if token.strip() else ""
    return _back(request, PAGE, notice=f"repository {made.owner}/{made.name} connected{said}")


@router.post("/connections/repositories/{repository_id}/token")
def set_token(
    request: Request, viewer: FormViewer, repository_id: str, token: str = Form(...), kind: str = Form("bearer")
) -> Response:
    try:
        connections.set_repository_credential(
            _store(request), viewer.user, repository_id, kind, Secret(token.strip()), _now(request)
        )
    except Exception as exc:
        return _back(request, PAGE, error=_problem(exc))
    return _back(request, PAGE, notice="token stored (sealed, never shown)")
