"""`ringfence sandbox exec`: run one command in a fresh sandbox, stream its output, exit with its code."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from ringfence.cli.common import DataDir, reports_errors, settings
from ringfence.cli.console import err
from ringfence.sandbox import BubblewrapBackend, Exit, Sandbox, SandboxBackend, SandboxError, SandboxSpec
from ringfence.sandbox.backends import open_backend
from ringfence.sandbox.spec import ProxyRoutes, parse_size

app = typer.Typer(no_args_is_help=True, help="Isolated sandboxes.")


@app.command("exec", context_settings={"allow_extra_args": False})
@reports_errors
def exec_command(
    command: Annotated[list[str], typer.Argument(help="the command and its arguments (after --)")],
    workspace: Annotated[
        Path | None,
        typer.Option(help="bind this directory as /workspace (kept; commands run as its owner, never root)"),
    ] = None,
    network: Annotated[str, typer.Option(help="none (only loopback inside) or proxy (the bridged proxies)")] = "none",
    egress_socket: Annotated[
        Path | None, typer.Option(help="proxy mode: the host Unix socket that 127.0.0.1:3128 inside reaches")
    ] = None,
    gateway_socket: Annotated[
        Path | None, typer.Option(help="proxy mode: the host Unix socket that 127.0.0.1:8080 inside reaches")
    ] = None,
    timeout: Annotated[float | None, typer.Option(help="seconds before the command is killed")] = None,
    memory: Annotated[str | None, typer.Option(help="memory limit, e.g. 512M or 2G")] = None,
    pids: Annotated[int | None, typer.Option(help="most processes and threads at once")] = None,
    workspace_size: Annotated[str | None, typer.Option(help="size of a fresh workspace, e.g. 1G; 0: none")] = None,
    sandbox_dir: Annotated[Path | None, typer.Option(help="where workspaces live (setting sandbox_dir)")] = None,
    backend_name: Annotated[
        str | None, typer.Option("--backend", help="bubblewrap or gvisor (default: the setting sandbox_backend)")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Run COMMAND isolated: new namespaces, read-only system, a private workspace, no network but the proxies.
    Unset limits come from the configuration (sandbox_memory, sandbox_pids, sandbox_workspace_size...)."""
    config = settings(data_dir)
    try:
        limits = config.sandbox_limits()
        if memory is not None:
            limits = replace(limits, memory_bytes=parse_size(memory))
        if pids is not None:
            limits = replace(limits, pids=pids)
        if timeout is not None:
            limits = replace(limits, timeout_seconds=timeout)
        if workspace_size is not None:
            limits = replace(limits, workspace_bytes=parse_size(workspace_size) or None)
        if network == "proxy" and egress_socket is None:
            raise SandboxError("--network proxy needs --egress-socket (the host socket of this session's proxy)")
        if network != "proxy" and (egress_socket or gateway_socket):
            raise SandboxError("--egress-socket and --gateway-socket are for --network proxy")
        proxies = ProxyRoutes(egress_socket, gateway_socket) if egress_socket is not None else None
        spec = SandboxSpec(network=network, limits=limits, proxies=proxies)  # type: ignore[arg-type]
        name = backend_name or config.sandbox_backend
        if workspace is not None and name != "bubblewrap":
            raise SandboxError("--workspace (an operator's directory) is a bubblewrap option")
        backend = open_backend(name, sandbox_dir or config.sandbox_dir, rootfs=config.sandbox_rootfs)
        code = asyncio.run(_run(backend, spec, command, workspace))
    except SandboxError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    raise typer.Exit(code)


async def _run(backend: SandboxBackend, spec: SandboxSpec, command: list[str], workspace: Path | None) -> int:
    if workspace is not None and not workspace.is_dir():
        raise SandboxError(f"workspace {workspace} is not a directory")
    if workspace is not None:
        assert isinstance(backend, BubblewrapBackend)
        sandbox: Sandbox = await backend.create(spec, workspace=workspace)
    else:
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
