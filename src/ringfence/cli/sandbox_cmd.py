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
    memory: Annotated[str, typer.Option(help="memory limit, e.g. 512M or 2G")] = "2G",
    pids: Annotated[int, typer.Option(help="most processes and threads at once")] = 1024,
    sandbox_dir: Annotated[
        Path | None, typer.Option(help="where workspaces live (default /var/lib/ringfence-sandboxes)")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Run COMMAND isolated: new namespaces, read-only system, a private empty workspace, no network."""
    settings(data_dir)  # validates the configuration like every other command
    try:
        limits = Limits(memory_bytes=parse_size(memory), pids=pids, timeout_seconds=timeout)
        spec = SandboxSpec(network=network, limits=limits)  # type: ignore[arg-type]
        backend = BubblewrapBackend(sandbox_dir or Path("/var/lib/ringfence-sandboxes"))
        code = asyncio.run(_run(backend, spec, command))
    except SandboxError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    raise typer.Exit(code)


_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}


def parse_size(text: str) -> int:
    """`512M`, `2G`, `65536K` or plain bytes."""
    value = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = value[-1:] if value[-1:] in _UNITS else ""
    number = value[: len(value) - len(unit)]
    if not number.isdigit():
        raise SandboxError(f"size {text!r} is not a number of bytes with an optional K, M or G")
    return int(number) * _UNITS[unit]


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
