"""Signing in to the console: an API token in an HttpOnly cookie, and a CSRF token on every form.

Owns: the cookie (HttpOnly, SameSite=Strict, path /ui, Secure behind HTTPS), the CSRF token (an HMAC of the
signed-in token under a key made when the server starts, so it is never stored and never guessable from the
page without the cookie), and `signed_in` (the user and key behind the cookie, or None). The token is checked
exactly as the API checks a bearer token, so a revoked key signs the console out too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
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


def _mac(request: Request, data: str) -> str:
    """The console's MAC (under the key made at start) of `data`: CSRF tokens and flash messages."""
    key: bytes = request.app.state.console_key
    return hmac.new(key, data.encode(), hashlib.sha256).hexdigest()


def csrf_token(request: Request) -> str:
    return _mac(request, _token(request) or "")


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


def same_site(request: Request) -> bool:
    """Whether a request came from this console's own pages: a browser names a cross-site sender in `Origin` and
    `Sec-Fetch-Site`; a request without either (a script, curl) is not a browser being used against its user."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return origin == f"{request.url.scheme}://{request.headers.get('host', '')}"


# A message to show on the next page: carried in a signed cookie, never in the address, so no text a link chose is
# ever shown (a crafted `?error=` link cannot put words on the console's pages).
FLASH = "rf_flash"
_FLASH_KINDS = ("error", "notice")


def set_flash(response: Response, request: Request, kind: str, text: str) -> None:
    payload = base64.urlsafe_b64encode(json.dumps([kind, text[:1500]]).encode()).decode()
    response.set_cookie(
        FLASH,
        f"{payload}.{_mac(request, payload)}",
        httponly=True,
        samesite="strict",
        path="/ui",
        max_age=60,
        secure=request.url.scheme == "https",
    )


def flash(request: Request) -> tuple[str, str] | None:
    """The (kind, text) the previous answer left for this page, if its signature holds."""
    payload, _, mac = request.cookies.get(FLASH, "").partition(".")
    if not payload:
        return None
    if not hmac.compare_digest(mac, _mac(request, payload)):
        return None
    kind, text = json.loads(base64.urlsafe_b64decode(payload))
    return (kind, text) if kind in _FLASH_KINDS and isinstance(text, str) else None
