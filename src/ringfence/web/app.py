"""Mounting the console on a server's app: its pages under /ui, its static files, its CSRF key and the answer to
a refused form."""

from __future__ import annotations

from html import escape
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from ringfence.web import connections_pages, pages, signin
from ringfence.web.pages import router


def mount(app: FastAPI) -> FastAPI:
    app.include_router(router)
    app.include_router(connections_pages.router)
    app.mount("/ui/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="console-static")
    app.state.console_key = signin.new_key()
    app.state.console = True

    def csrf_refused(_: Request, exc: Exception) -> HTMLResponse:
        return HTMLResponse(f"<!doctype html><title>Refused</title><p>{escape(str(exc))}</p>", status_code=403)

    app.add_exception_handler(signin.CsrfRefused, csrf_refused)
    app.add_exception_handler(pages.SignedOut, pages.answer_signed_out)
    app.add_exception_handler(pages.NotOrgAdmin, pages.answer_not_org_admin)
    return app
