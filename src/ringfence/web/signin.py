"""Signing in to the console: an API token in an HttpOnly cookie, and a CSRF token on every form.

Owns: the cookie (HttpOnly, SameSite=Strict, path /ui, Secure behind HTTPS), the CSRF token (an HMAC of the
signed-in token under a key made when the server starts, so it is never stored and never guessable from the
page without the cookie), and `signed_in` (the user and key behind the cookie, or None). The token is checked
exactly as the API checks a bearer token, so a revoked key signs the console out too.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import Request, Response

from ringfence.store import accounts
from ringfence.store.db import Store
from ringfence.store.models import ApiKey, User

COOKIE = "rf_console"
CSRF_FIELD = "csrf"


class CsrfRefused(Exception):
    """A form arrived without the CSRF token of the signed-in user."""


def new_key() -> bytes:
    return secrets.token_bytes(32)


def _token(request: Request) -> str | None:
    return request.cookies.get(COOKIE)


def signed_in(request: Request, store: Store) -> tuple[User, ApiKey] | None:
    token = _token(request)
    if not token:
        return None
    return accounts.authenticate(store, token)


def csrf_token(request: Request) -> str:
    key: bytes = request.app.state.console_key
    return hmac.new(key, (_token(request) or "").encode(), hashlib.sha256).hexdigest()


def check_csrf(request: Request, sent: str | None) -> None:
    if not _token(request) or not sent or not hmac.compare_digest(sent, csrf_token(request)):
        raise CsrfRefused("this form is stale or did not come from this console; reload the page and try again")


def sign_in(response: Response, request: Request, token: str) -> None:
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/ui",
        max_age=12 * 3600,
    )


def sign_out(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/ui")
