"""How refusals become HTTP answers: one status per exception class, and a body that names what was wrong."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from ringfence.egress.rules import RuleError
from ringfence.policy import PolicyError
from ringfence.sessions.manager import SessionError
from ringfence.store.crypto import CryptoError
from ringfence.store.errors import Conflict, ContentRefused, Invalid, NotFound, StoreError


class Forbidden(StoreError):
    """The caller is authenticated but may not do this."""


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


def describe(exc: Exception) -> tuple[int, str, str] | None:
    """The status, code and message an exception answers with (None: not a refusal, an internal error)."""
    for exc_type, status, code in _STATUS:
        if isinstance(exc, exc_type):
            return status, code, exc.detail if isinstance(exc, PolicyError) else str(exc)
    return None


def _answer(status: int, code: str, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    for exc_type, status, code in _STATUS:

        def handler(_: Request, exc: Exception, status: int = status, code: str = code) -> JSONResponse:
            message = exc.detail if isinstance(exc, PolicyError) else str(exc)
            return _answer(status, code, message)

        app.add_exception_handler(exc_type, handler)

    def invalid(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}" for e in exc.errors()
        )
        return _answer(422, "invalid", problems)

    app.add_exception_handler(RequestValidationError, invalid)
