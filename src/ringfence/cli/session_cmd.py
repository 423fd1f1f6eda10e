"""`ringfence session ...`: sessions through the server's API (start, prompt with live output, show with the
egress audit, end, delete, list). The token comes from --token or RINGFENCE_TOKEN."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Annotated, Any

import typer
from rich.table import Table

from ringfence.cli.common import DataDir, settings
from ringfence.cli.console import err, out

app = typer.Typer(no_args_is_help=True, help="Agent sessions, through the server's API.")

Server = Annotated[str | None, typer.Option(help="the server's address (default: this configuration's listen)")]
Token = Annotated[str | None, typer.Option(help="API token (default: $RINGFENCE_TOKEN)", show_default=False)]


class ApiError(Exception):
    pass


def _client(server: str | None, token: str | None, data_dir: Any) -> tuple[str, str]:
    base = server or f"http://{settings(data_dir).listen}"
    bearer = token or os.environ.get("RINGFENCE_TOKEN")
    if not bearer:
        err.print("[bold red]error:[/] no API token: pass --token or set RINGFENCE_TOKEN (make run prints one)")
        raise typer.Exit(2)
    return base.rstrip("/"), bearer


def _call(base: str, token: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)  # noqa: S310 (the configured server)
    request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=900) as answer:  # noqa: S310
            raw = answer.read()
            return json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = exc.reason
        raise ApiError(f"{exc.code}: {message}") from None
    except urllib.error.URLError as exc:
        raise ApiError(f"cannot reach the server at {base}: {exc.reason}") from None


def _run(func: Any) -> Any:
    try:
        return func()
    except ApiError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from None


@app.command("start")
def start(
    repo: Annotated[str, typer.Option(help="the repository id (GET /v1/users/ME/repositories)")],
    network: Annotated[str, typer.Option(help="none, trusted, custom or full")] = "trusted",
    allow: Annotated[list[str] | None, typer.Option(help="allowed host (repeat)")] = None,
    server: Server = None,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """Start a session: a sandbox, the repository cloned through the gateway onto the session branch."""
    base, bearer = _client(server, token, data_dir)
    with out.status("starting the sandbox and cloning through the gateway..."):
        made = _run(lambda: _call(base, bearer, "POST", "/v1/sessions",
                                  {"repository_id": repo, "network": network, "allow": allow or []}))  # fmt: skip
    out.print(f"session {made['id']} on branch {made['branch']}")
    out.print(made["id"], highlight=False)


@app.command("resume")
def resume(
    session: Annotated[str, typer.Argument(help="the session id")],
    network: Annotated[str, typer.Option(help="none, trusted, custom or full")] = "trusted",
    server: Server = None,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """Resume an ended or interrupted session in a new sandbox, from its pushed branch."""
    base, bearer = _client(server, token, data_dir)
    with out.status("starting the sandbox and cloning through the gateway..."):
        made = _run(lambda: _call(base, bearer, "POST", f"/v1/sessions/{session}/resume", {"network": network}))
    out.print(f"session {made['id']} resumed on branch {made['branch']}")


@app.command("prompt")
def prompt(
    session: Annotated[str, typer.Argument(help="the session id")],
    text: Annotated[str, typer.Argument(help="what to ask the agent")],
    server: Server = None,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """Give the agent a prompt and watch its output as it comes."""
    base, bearer = _client(server, token, data_dir)
    request = urllib.request.Request(  # noqa: S310
        f"{base}/v1/sessions/{session}/prompts", data=json.dumps({"text": text}).encode(), method="POST"
    )
    request.add_header("Authorization", f"Bearer {bearer}")
    request.add_header("Content-Type", "application/json")
    code = 0
    try:
        with urllib.request.urlopen(request, timeout=900) as stream:  # noqa: S310
            kind = ""
            for raw in stream:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    event = json.loads(line[6:])
                    if kind == "output":
                        (out if event["stream"] == "stdout" else err).print(event["text"], end="", markup=False)
                    elif kind == "exit":
                        code = event["code"]
    except urllib.error.HTTPError as exc:
        err.print(f"[bold red]error:[/] {exc.code}: {exc.read().decode(errors='replace')[:300]}")
        raise typer.Exit(1) from None
    raise typer.Exit(0 if code == 0 else 1)


@app.command("show")
def show(
    session: Annotated[str, typer.Argument(help="the session id")],
    server: Server = None,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """A session's state and retention, and what left it (egress and gateway records)."""
    base, bearer = _client(server, token, data_dir)
    info = _run(lambda: _call(base, bearer, "GET", f"/v1/sessions/{session}"))
    for key in ("id", "state", "running", "branch", "zdr", "retention_rule", "delete_after", "turns"):
        out.print(f"{key:>15}: {info.get(key)}", markup=False)
    records = _run(lambda: _call(base, bearer, "GET", f"/v1/sessions/{session}/egress"))
    table = Table("at", "kind", "destination", "decision", "rule", "bytes up/down")
    for r in records:
        where = r.get("target") or r.get("host") or r.get("service") or ""
        table.add_row(r["at"][11:19], r["kind"], str(where)[:60], r.get("decision", ""), str(r.get("rule", ""))[:40],
                      f"{r.get('bytes_up', 0)}/{r.get('bytes_down', 0)}")  # fmt: skip
    out.print(table)


@app.command("list")
def list_sessions(server: Server = None, token: Token = None, data_dir: DataDir = None) -> None:
    """Your sessions."""
    base, bearer = _client(server, token, data_dir)
    table = Table("id", "state", "running", "created", "delete after")
    for s in _run(lambda: _call(base, bearer, "GET", "/v1/sessions")):
        table.add_row(s["id"], s["state"], str(s["running"]), s["created_at"][:19], str(s["delete_after"])[:19])
    out.print(table)


@app.command("end")
def end(
    session: Annotated[str, typer.Argument(help="the session id")],
    server: Server = None,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """Push the session branch through the gateway and end the session."""
    base, bearer = _client(server, token, data_dir)
    ended = _run(lambda: _call(base, bearer, "POST", f"/v1/sessions/{session}/end"))
    out.print(f"pushed {ended['pushed'][:12]} to {ended['branch']}; session ended")


@app.command("delete")
def delete(
    session: Annotated[str, typer.Argument(help="the session id")],
    server: Server = None,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """Delete a session now: its content becomes unreadable at once."""
    base, bearer = _client(server, token, data_dir)
    _run(lambda: _call(base, bearer, "DELETE", f"/v1/sessions/{session}"))
    out.print(f"session {session} deleted")
