"""The CLI's client of the server's API: the token, JSON calls, server-sent event streams, and errors that say
what the server refused. Used by `ringfence session ...` and `ringfence env ...`."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Annotated, Any, TypeVar

import typer

from ringfence.cli.common import settings
from ringfence.cli.console import err

Server = Annotated[str | None, typer.Option(help="the server's address (default: this configuration's listen)")]
Token = Annotated[str | None, typer.Option(help="API token (default: $RINGFENCE_TOKEN)", show_default=False)]
T = TypeVar("T")


class ApiError(Exception):
    pass


def client(server: str | None, token: str | None, data_dir: Any) -> tuple[str, str]:
    base = server or f"http://{settings(data_dir).listen}"
    bearer = token or os.environ.get("RINGFENCE_TOKEN")
    if not bearer:
        err.print("[bold red]error:[/] no API token: pass --token or set RINGFENCE_TOKEN (make run prints one)")
        raise typer.Exit(2)
    return base.rstrip("/"), bearer


def _request(base: str, token: str, method: str, path: str, body: dict[str, Any] | None) -> urllib.request.Request:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)  # noqa: S310 (the configured server)
    request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    return request


def _refused(exc: urllib.error.HTTPError) -> ApiError:
    try:
        message = json.loads(exc.read())["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = exc.reason
    return ApiError(f"{exc.code}: {message}")


def call(base: str, token: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    try:
        with urllib.request.urlopen(_request(base, token, method, path, body), timeout=900) as answer:  # noqa: S310
            raw = answer.read()
            return json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raise _refused(exc) from None
    except urllib.error.URLError as exc:
        raise ApiError(f"cannot reach the server at {base}: {exc.reason}") from None


def events(
    base: str, token: str, method: str, path: str, body: dict[str, Any] | None = None
) -> Iterator[tuple[str, Any]]:
    """A server-sent event stream, as (event, data) pairs in the order they arrive."""
    request = _request(base, token, method, path, body)
    request.add_header("Accept", "text/event-stream")
    try:
        with urllib.request.urlopen(request, timeout=900) as stream:  # noqa: S310
            kind = ""
            for raw in stream:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    yield kind, json.loads(line[6:])
    except urllib.error.HTTPError as exc:
        raise _refused(exc) from None
    except urllib.error.URLError as exc:
        raise ApiError(f"cannot reach the server at {base}: {exc.reason}") from None


def run(func: Callable[[], T]) -> T:
    try:
        return func()
    except ApiError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from None
