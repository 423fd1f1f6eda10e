"""`ringfence sandbox exec`: run one command in a fresh sandbox, stream its output, exit with its code."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer

from ringfence.cli.common import DataDir, err, reports_errors, settings
from ringfence.sandbox import BubblewrapBackend, Exit, Limits, SandboxError, SandboxSpec

app = typer.Typer(no_args_is_help=True, help="Isolated sandboxes.")


@app.command("exec", context_settings={"allow_extra_args": False})
@reports_errors
def exec_command(
    command: Annotated[list[str], typer.Argument(help="the command and its arguments (after --)")],
    network: Annotated[str, typer.Option(help="none (only loopback inside); proxy is not available yet")] = "none",
    timeout: Annotated[float, typer.Option(help="seconds before the command is killed")] = 600.0,
    sandbox_dir: Annotated[
        Path | None, typer.Option(help="where workspaces live (default /var/lib/ringfence-sandboxes)")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Run COMMAND isolated: new namespaces, read-only system, a private empty workspace, no network."""
    settings(data_dir)  # validates the configuration like every other command
    try:
        spec = SandboxSpec(network=network, limits=Limits(timeout_seconds=timeout))  # type: ignore[arg-type]
        backend = BubblewrapBackend(sandbox_dir or Path("/var/lib/ringfence-sandboxes"))
        code = asyncio.run(_run(backend, spec, command))
    except SandboxError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    raise typer.Exit(code)


async def _run(backend: BubblewrapBackend, spec: SandboxSpec, command: list[str]) -> int:
    sandbox = await backend.create(spec)
    try:
        async for event in sandbox.exec(command):
            if isinstance(event, Exit):
                if event.timed_out:
                    err.print("[yellow]the command was killed: it ran past its timeout[/]")
                return event.code if event.code >= 0 else 128 - event.code
            target = sys.stdout.buffer if event.stream == "stdout" else sys.stderr.buffer
            target.write(event.data)
            target.flush()
        return 1
    finally:
        await sandbox.destroy()
