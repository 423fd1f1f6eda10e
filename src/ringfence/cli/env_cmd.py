"""`ringfence environment ...` (alias `env`): an account's environments through the server's API: create or
replace from flags or a JSON file, list, show, delete. Settings are checked by the server, which names what
was wrong."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ringfence.cli.api_client import Server, Token, call, client, run
from ringfence.cli.common import DataDir
from ringfence.cli.console import err, out

app = typer.Typer(no_args_is_help=True, help="Environments: where your account's sessions run.")
Name = Annotated[str, typer.Argument(help="the environment's name")]


def _settings(
    file: Path | None,
    network: str | None,
    allow: list[str] | None,
    deny: list[str] | None,
    agent: str | None,
    setup_file: Path | None,
    setup_network: str | None,
    setup_allow: list[str] | None,
    telemetry: bool | None,
    memory: str | None,
    workspace: str | None,
    timeout: float | None,
    variables: list[str] | None,
    model: str | None = None,
) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if file is not None:
        try:
            settings = json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            err.print(f"[bold red]error:[/] cannot read settings from {file}: {exc}")
            raise typer.Exit(2) from None
    given = {"network": network, "allow": allow, "deny": deny, "agent": agent, "setup_network": setup_network,
             "setup_allow": setup_allow, "telemetry": telemetry, "model": model}  # fmt: skip
    settings.update({key: value for key, value in given.items() if value is not None})
    if setup_file is not None:
        settings["setup"] = setup_file.read_text()
    limits = {"memory": memory, "workspace": workspace, "timeout_seconds": timeout}
    if any(v is not None for v in limits.values()):
        settings["limits"] = {**settings.get("limits", {}), **{k: v for k, v in limits.items() if v is not None}}
    for pair in variables or []:
        key, sep, value = pair.partition("=")
        if not sep:
            err.print(f"[bold red]error:[/] --env {pair!r} is not NAME=VALUE")
            raise typer.Exit(2)
        settings.setdefault("env", {})[key] = value
    return settings


@app.command("set")
def set_environment(
    name: Name,
    file: Annotated[Path | None, typer.Option(help="settings as a JSON object (flags override it)")] = None,
    network: Annotated[str | None, typer.Option(help="none, trusted, custom or full")] = None,
    allow: Annotated[list[str] | None, typer.Option(help="allowed host[:port] (repeat)")] = None,
    deny: Annotated[list[str] | None, typer.Option(help="denied host[:port] (repeat)")] = None,
    agent: Annotated[
        str | None, typer.Option(help="a preset (builtin, claude-code, codex) or a command template with {prompt}")
    ] = None,
    model: Annotated[str | None, typer.Option(help="the model a preset asks for")] = None,
    setup_file: Annotated[Path | None, typer.Option(help="setup script run before the agent")] = None,
    setup_network: Annotated[str | None, typer.Option(help="the setup script's network mode")] = None,
    setup_allow: Annotated[list[str] | None, typer.Option(help="host the setup script may reach (repeat)")] = None,
    telemetry: Annotated[bool | None, typer.Option("--telemetry/--no-telemetry", help="allow telemetry hosts")] = None,
    memory: Annotated[str | None, typer.Option(help="memory limit per command, e.g. 2G")] = None,
    workspace: Annotated[str | None, typer.Option(help="workspace size, e.g. 10G")] = None,
    timeout: Annotated[float | None, typer.Option(help="seconds per command")] = None,
    variables: Annotated[list[str] | None, typer.Option("--env", help="NAME=VALUE for the agent (repeat)")] = None,
    server: Server = None,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """Create an environment, or replace all the settings of an existing one (unset flags take defaults)."""
    settings = _settings(file, network, allow, deny, agent, setup_file, setup_network, setup_allow, telemetry,
                         memory, workspace, timeout, variables, model)  # fmt: skip
    base, bearer = client(server, token, data_dir)
    existing = {e["name"] for e in run(lambda: call(base, bearer, "GET", "/v1/environments"))}
    if name in existing:
        made = run(lambda: call(base, bearer, "PUT", f"/v1/environments/{name}", settings))
        out.print(f"environment {made['name']} replaced ({made['id']})")
    else:
        made = run(lambda: call(base, bearer, "POST", "/v1/environments", {"name": name, **settings}))
        out.print(f"environment {made['name']} created ({made['id']})")


@app.command("list")
def list_environments(server: Server = None, token: Token = None, data_dir: DataDir = None) -> None:
    """Your account's environments."""
    base, bearer = client(server, token, data_dir)
    table = Table("name", "network", "allow", "setup", "telemetry", "agent")
    for e in run(lambda: call(base, bearer, "GET", "/v1/environments")):
        s = e["settings"]
        table.add_row(e["name"], s["network"], ", ".join(s["allow"])[:40],
                      f"yes ({s['setup_network']})" if s.get("setup") else "no", str(s["telemetry"]),
                      (s["agent"] if isinstance(s["agent"], str) else " ".join(s["agent"]))[:40])  # fmt: skip
    out.print(table)


@app.command("show")
def show(name: Name, server: Server = None, token: Token = None, data_dir: DataDir = None) -> None:
    """One environment's settings, as JSON."""
    base, bearer = client(server, token, data_dir)
    out.print_json(data=run(lambda: call(base, bearer, "GET", f"/v1/environments/{name}")))


@app.command("delete")
def delete(name: Name, server: Server = None, token: Token = None, data_dir: DataDir = None) -> None:
    """Delete an environment (sessions that ran in it must be resumed in another)."""
    base, bearer = client(server, token, data_dir)
    run(lambda: call(base, bearer, "DELETE", f"/v1/environments/{name}"))
    out.print(f"environment {name} deleted")
