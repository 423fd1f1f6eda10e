"""`ringfence agent install|list`: the agent CLIs sessions can run (ringfence.agents)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ringfence.agents.install import AgentInstalls, InstallError
from ringfence.agents.presets import PRESETS
from ringfence.cli.common import DataDir, settings
from ringfence.cli.console import err, out
from ringfence.sandbox import SandboxError
from ringfence.sessions.agent_tools import sandbox_check

app = typer.Typer(no_args_is_help=True, help="Agent CLIs (Claude Code, Codex): install them for sessions.")


@app.command("install")
def install(
    names: Annotated[list[str], typer.Argument(help="claude-code, codex (one or more)")],
    version: Annotated[str | None, typer.Option(help="a version npm has (default: the one ringfence pins)")] = None,
    data_dir: DataDir = None,
) -> None:
    """Install an agent's npm package into the data directory, check it runs in a sandbox, and record it."""
    config = settings(data_dir)
    try:
        backend = config.sandbox_backend_for()
    except (SandboxError, OSError) as exc:
        err.print(f"[bold red]error:[/] no sandbox to check agents in: {exc}")
        raise typer.Exit(1) from None
    installs = AgentInstalls(config.data_dir)
    for name in names:
        try:
            done = installs.install(name, sandbox_check(backend), version)
        except InstallError as exc:
            err.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(2) from None
        out.print(f"{name}: {done.package}@{done.version} installed ({done.reported}) in {done.path}")


@app.command("list")
def list_agents(data_dir: DataDir = None) -> None:
    """The agent presets and which are installed."""
    installed = {a.preset: a for a in AgentInstalls(settings(data_dir).data_dir).installed()}
    table = Table("preset", "package", "pinned", "installed", "reports")
    for name, preset in PRESETS.items():
        found = installed.get(name)
        state = found.version if found else ("built in" if preset.package is None else "[yellow]not installed[/]")
        table.add_row(name, preset.package or "-", preset.version or "-", state, found.reported if found else "")
    out.print(table)
