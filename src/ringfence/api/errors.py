"""How refusals become HTTP answers: one status per exception class, and a body that names what was wrong."""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from ringfence.access import Forbidden
from ringfence.egress.rules import RuleError
from ringfence.policy import PolicyError
from ringfence.sessions.manager import SessionError
from ringfence.store.crypto import CryptoError
from ringfence.store.errors import Conflict, ContentRefused, Invalid, NotFound, StoreError


class Unauthorized(StoreError):
    """No valid bearer token."""


class Unavailable(StoreError):
    """This server cannot do that here (e.g. it runs no sandboxes)."""


_STATUS: list[tuple[type[Exception], int, str]] = [
    (Unauthorized, 401, "unauthorized"),
    (Forbidden, 403, "forbidden"),
    (NotFound, 404, "not_found"),
    (Conflict, 409, "conflict"),
    (ContentRefused, 409, "content_refused"),
    (Invalid, 422, "invalid"),
    (PolicyError, 422, "policy_refused"),
    (CryptoError, 500, "crypto_error"),
    (Unavailable, 503, "unavailable"),
    (RuleError, 422, "invalid"),
    (SessionError, 502, "session_failed"),
]


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    """Every refusal's body: `{"error": {"code", "message"}}`."""

    error: ErrorDetail


_MEANINGS = {
    401: "No valid bearer token",
    403: "Authenticated, but not allowed to do this",
    404: "Not found, or not visible to the caller",
    409: "Contradicts what is stored (a duplicate, already deleted, running already, content refused)",
    422: "Malformed input; the message names each field that was wrong",
    502: "A session step failed (clone, setup script, push); the message has git's or the script's last words",
    503: "This server runs no sandboxes",
}
COMMON_REFUSALS = (401, 403, 404, 409, 422)


def refusals(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the refusals a route may answer with, so clients generated from the schema know
    them and their body."""
    return {status: {"model": ErrorBody, "description": _MEANINGS[status]} for status in statuses}


def describe(exc: Exception) -> tuple[int, str, str] | None:
    """The status, code and message an exception answers with (None: not a refusal, an internal error)."""
    for exc_type, status, code in _STATUS:
        if isinstance(exc, exc_type):
            return status, code, exc.detail if isinstance(exc, PolicyError) else str(exc)
    return None


def _answer(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _problem(error: Any) -> str:
    """One validation error as `field: what was wrong`."""
    if error["type"] == "json_invalid":  # FastAPI's location is ("body", offset)
        return f"body: not valid JSON at character {error['loc'][-1]} ({error['ctx']['error']})"
    return f"{'.'.join(str(p) for p in error['loc'] if p != 'body') or 'body'}: {error['msg']}"


_SEGMENTS = re.compile(r"(\{[^}]+\})")  # a path template's parameters, e.g. {user_id}


def _allowed_methods(app: FastAPI, path: str) -> set[str]:
    """Every method some route serves on `path`. Starlette's own Allow names only the first route whose path
    matched, and a path here often has one route per method; the schema lists them all."""
    allowed: set[str] = set()
    for template, operations in app.openapi()["paths"].items():
        pattern = "".join("[^/]+" if part.startswith("{") else re.escape(part) for part in _SEGMENTS.split(template))
        if re.fullmatch(pattern, path):
            allowed |= {method.upper() for method in operations}
    return allowed | ({"HEAD"} if "GET" in allowed else set())


async def _routing_refusal(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, wrong method, an unreadable body) in the API's error shape; the
    console's pages keep the framework's answers."""
    assert isinstance(exc, HTTPException)
    path = request.url.path
    if not path.startswith("/v1/"):
        return await http_exception_handler(request, exc)
    if exc.status_code == 400:  # only the body reader raises this here: the bytes are not text at all
        cause = exc.__cause__
        why = f" ({cause.reason} at byte {cause.start})" if isinstance(cause, UnicodeDecodeError) else ""
        return _answer(422, "invalid", f"body: not JSON text in UTF-8{why}")
    if exc.status_code == 405:
        listed = ", ".join(sorted(_allowed_methods(request.app, path))) or (exc.headers or {}).get("Allow", "")
        return _answer(405, "method_not_allowed", f"{request.method} {path}: use {listed}", {"Allow": listed})
    if exc.status_code == 404:
        return _answer(404, "not_found", f"no route {path}")
    return _answer(exc.status_code, f"http_{exc.status_code}", str(exc.detail))


def install(app: FastAPI) -> None:
    for exc_type, status, code in _STATUS:

        def handler(_: Request, exc: Exception, status: int = status, code: str = code) -> JSONResponse:
            message = exc.detail if isinstance(exc, PolicyError) else str(exc)
            return _answer(status, code, message)

        app.add_exception_handler(exc_type, handler)

    def invalid(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return _answer(422, "invalid", "; ".join(_problem(e) for e in exc.errors()))

    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, _routing_refusal)
