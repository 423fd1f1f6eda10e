"""`ringfence session ...`: sessions through the server's API (start and resume with progress bars for the clone
and the setup script, prompt with live output, show with the egress audit, logs, end, delete, list, feedback,
rate). The token comes from --token or RINGFENCE_TOKEN."""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ringfence.cli.api_client import ApiError, Server, Token, call, client, events, run
from ringfence.cli.common import DataDir
from ringfence.cli.console import err, out

app = typer.Typer(no_args_is_help=True, help="Agent sessions, through the server's API.")
SessionId = Annotated[str, typer.Argument(help="the session id")]
# git's progress lines: "Receiving objects:  45% (9/20)"; the clone bar follows the phase git is in.
_GIT_PROGRESS = re.compile(r"([A-Za-z ]+):\s+(\d{1,3})%")


def _launch(base: str, bearer: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST a start or resume as a stream: a bar for the clone, the setup script's output above a bar of its
    own, then the session (or the server's reason for failing)."""
    session: dict[str, Any] | None = None
    columns = (TextColumn("{task.description:<28}"), BarColumn(), TaskProgressColumn(),
               TextColumn("{task.fields[note]}"), TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=err, transient=False) as bars:
        tasks: dict[str, TaskID] = {}

        def bar(step: str, description: str) -> TaskID:
            for name, other in tasks.items():
                if name != step:
                    bars.update(other, completed=100)
            if step not in tasks:
                tasks[step] = bars.add_task(description, total=100, note="")
            return tasks[step]

        for kind, data in events(base, bearer, "POST", path, body):
            if kind == "progress" and data["step"] == "sandbox":
                bars.update(bar("sandbox", "sandbox"), completed=50)
            elif kind == "progress" and data["step"] == "clone":
                task = bar("clone", "clone through the gateway")
                for phase, percent in _GIT_PROGRESS.findall(data["detail"]):
                    bars.update(task, completed=int(percent), note=phase.strip().lower())
            elif kind == "progress" and data["step"] == "setup":
                task = bar("setup", "setup script")
                bars.update(task, completed=50, note="running")
                bars.console.print(data["detail"], end="", markup=False, highlight=False)
            elif kind == "progress" and data["step"] == "ready":
                for task in tasks.values():
                    bars.update(task, completed=100, note="done")
            elif kind == "session":
                session = data
            elif kind == "error":
                raise ApiError(f"{data['status']}: {data['message']}")
    if session is None:
        raise ApiError("the server closed the stream before the session was ready")
    return session


@app.command("start")
def start(
    repo: Annotated[str, typer.Option(help="the repository id (GET /v1/users/ME/repositories)")],
    environment: Annotated[str, typer.Option("--environment", "-e", help="one of your account's environments")] = (
        "default"
    ),
    server: Server = None,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """Start a session: a sandbox, the repository cloned through the gateway onto the session branch, and the
    environment's setup script."""
    base, bearer = client(server, token, data_dir)
    made = run(lambda: _launch(base, bearer, "/v1/sessions", {"repository_id": repo, "environment": environment}))
    out.print(f"session {made['id']} on branch {made['branch']}")
    out.print(made["id"], highlight=False)


@app.command("resume")
def resume(
    session: SessionId,
    environment: Annotated[
        str | None, typer.Option("--environment", "-e", help="default: the environment it ran in")
    ] = None,
    server: Server = None,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """Resume an ended or interrupted session in a new sandbox, from its pushed branch."""
    base, bearer = client(server, token, data_dir)
    body = {} if environment is None else {"environment": environment}
    made = run(lambda: _launch(base, bearer, f"/v1/sessions/{session}/resume", body))
    out.print(f"session {made['id']} resumed on branch {made['branch']}")


def render(kind: str, event: dict[str, Any]) -> None:
    """An agent's typed event, readably: its text as it streams, each tool call as a line with how it ended."""
    if kind == "text":
        out.print(event["text"], end="", markup=False, highlight=False)
    elif kind == "tool_call" and event["status"] == "running":
        out.print(f"\n[bold cyan]▸ {escape(event['name'])}[/] {escape(event['input'])}", highlight=False)
    elif kind == "tool_call":
        colour = "green" if event["status"] == "ok" else "red"
        result = event["result"].strip().splitlines()
        tail = f" {escape(result[0][:160])}" + (" …" if len(result) > 1 else "") if result else ""
        out.print(f"  [{colour}]↳ {event['status']}[/]{tail}", highlight=False)
    elif kind == "usage":
        out.print(f"\n[dim]{event['input_tokens']} input tokens, {event['output_tokens']} output tokens[/]")
    elif kind == "agent_error":
        err.print(f"\n[bold red]agent error:[/] {escape(event['message'])}", highlight=False)


@app.command("prompt")
def prompt(
    session: SessionId,
    text: Annotated[str, typer.Argument(help="what to ask the agent")],
    server: Server = None,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """Give the agent a prompt and watch its output as it comes."""
    base, bearer = client(server, token, data_dir)

    def stream() -> int:
        code = 1
        for kind, event in events(base, bearer, "POST", f"/v1/sessions/{session}/prompts", {"text": text}):
            if kind == "output":
                (out if event["stream"] == "stdout" else err).print(event["text"], end="", markup=False)
            elif kind == "exit":
                code = event["code"]
            elif kind in ("text", "tool_call", "usage", "agent_error"):
                render(kind, event)
        return code

    raise typer.Exit(0 if run(stream) == 0 else 1)


@app.command("show")
def show(session: SessionId, server: Server = None, token: Token = None, data_dir: DataDir = None) -> None:
    """A session's state and retention, and what left it (egress and gateway records)."""
    base, bearer = client(server, token, data_dir)
    info = run(lambda: call(base, bearer, "GET", f"/v1/sessions/{session}"))
    for key in ("id", "status", "state", "running", "interrupted", "branch", "environment_id", "zdr", "retention_rule",
                "delete_after", "turns", "backend"):  # fmt: skip
        out.print(f"{key:>15}: {info.get(key)}", markup=False)
    records = run(lambda: call(base, bearer, "GET", f"/v1/sessions/{session}/egress"))
    table = Table("at", "kind", "phase", "destination", "decision", "rule", "bytes up/down")
    for r in records:
        where = r.get("target") or r.get("host") or r.get("service") or ""
        table.add_row(r["at"][11:19], r["kind"], r.get("phase", ""), str(where)[:60], r.get("decision", ""),
                      str(r.get("rule", ""))[:40], f"{r.get('bytes_up', 0)}/{r.get('bytes_down', 0)}")  # fmt: skip
    out.print(table)


@app.command("logs")
def logs(session: SessionId, server: Server = None, token: Token = None, data_dir: DataDir = None) -> None:
    """What is kept of a session, turn by turn: prompts, the agent's output, code changes (nothing under ZDR)."""
    base, bearer = client(server, token, data_dir)
    items = run(lambda: call(base, bearer, "GET", f"/v1/sessions/{session}/content"))
    if not items:
        out.print("nothing is kept of this session (zero data retention, or nothing happened yet)")
    for item in items:
        out.rule(f"turn {item['turn']} · {item['kind']} · {item['created_at'][:19]}")
        out.print(item["text"], markup=False, highlight=False)


@app.command("list")
def list_sessions(server: Server = None, token: Token = None, data_dir: DataDir = None) -> None:
    """Your sessions."""
    base, bearer = client(server, token, data_dir)
    table = Table("id", "state", "running", "interrupted", "created", "delete after")
    for s in run(lambda: call(base, bearer, "GET", "/v1/sessions")):
        table.add_row(s["id"], s["state"], str(s["running"]), str(s["interrupted"]), s["created_at"][:19],
                      str(s["delete_after"])[:19])  # fmt: skip
    out.print(table)


@app.command("end")
def end(session: SessionId, server: Server = None, token: Token = None, data_dir: DataDir = None) -> None:
    """Push the session branch through the gateway and end the session."""
    base, bearer = client(server, token, data_dir)
    ended = run(lambda: call(base, bearer, "POST", f"/v1/sessions/{session}/end"))
    if ended.get("changed") is False:
        out.print(f"nothing changed: {ended['branch']} is the base commit {ended['pushed'][:12]}; session ended")
    else:
        out.print(f"pushed {ended['pushed'][:12]} to {ended['branch']}; session ended")


@app.command("delete")
def delete(session: SessionId, server: Server = None, token: Token = None, data_dir: DataDir = None) -> None:
    """Delete a session now: its content becomes unreadable at once."""
    base, bearer = client(server, token, data_dir)
    run(lambda: call(base, bearer, "DELETE", f"/v1/sessions/{session}"))
    out.print(f"session {session} deleted")


@app.command("feedback")
def feedback(
    session: SessionId,
    comment: Annotated[str, typer.Argument(help="what you want to tell us")],
    server: Server = None,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """Send feedback: your comment with the session's transcript, kept 5 years (refused under ZDR)."""
    base, bearer = client(server, token, data_dir)
    sent = run(lambda: call(base, bearer, "POST", f"/v1/sessions/{session}/feedback", {"comment": comment}))
    out.print(f"feedback {sent['id']} sent with the transcript; kept until {sent['delete_after'][:10]}")


@app.command("rate")
def rate(
    session: SessionId,
    value: Annotated[str, typer.Argument(help="1, 2, 3 or dismiss")],
    server: Server = None,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """Rate a session: only the rating is stored, nothing of the session's content."""
    if value not in ("1", "2", "3", "dismiss"):
        err.print(f"[bold red]error:[/] rating {value!r} is not 1, 2, 3 or dismiss")
        raise typer.Exit(2)
    base, bearer = client(server, token, data_dir)
    body = {"value": value if value == "dismiss" else int(value)}
    run(lambda: call(base, bearer, "POST", f"/v1/sessions/{session}/rating", body))
    out.print(f"session {session} rated {value}")
