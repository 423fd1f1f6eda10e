"""`ringfence serve`: open the store, make sure an admin and its token exist, print where to go, serve."""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import os
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from sqlalchemy import select

from ringfence.cli.common import DataDir, now, reports_errors, settings, store_from
from ringfence.cli.console import err, out
from ringfence.config import Settings
from ringfence.sandbox import SandboxError
from ringfence.server import create_app, http_config
from ringfence.sessions.demo import start_demo
from ringfence.sessions.embedded import embedded_sessions, upstream_dialer
from ringfence.store import accounts
from ringfence.store.crypto import Secret
from ringfence.store.db import Store
from ringfence.store.models import User

TOKEN_FILE = "admin-token"  # noqa: S105 (a file name, not a secret)


def bootstrap_admin(store: Store, data_dir: Path) -> Secret:
    """The server admin's token: kept (0600) in the data directory so every start can print a working one."""
    path = data_dir / TOKEN_FILE
    if path.exists():
        token = Secret(path.read_text().strip())
        if accounts.authenticate(store, token.reveal()) is not None:
            return token
    with store.read() as db:
        admin = db.scalar(select(User).where(User.server_admin.is_(True)).limit(1))
    if admin is None:
        admin = accounts.create_user(store, "admin", now(), actor="bootstrap", server_admin=True)
    _, token = accounts.create_api_key(store, admin.id, "bootstrap admin token", now(), actor="bootstrap")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token.reveal() + "\n")
    return token


def reconcile_sandboxes(config: Settings) -> None:
    """At start: remove sandboxes (processes, mounts, workspaces) that a previous server left behind."""
    if not config.sandbox_dir.exists():
        return
    try:
        backend = config.sandbox_backend_for()
        removed = asyncio.run(backend.reconcile(keep=set()))
    except (SandboxError, OSError) as exc:
        err.print(f"[bold yellow]warning:[/] sandboxes unavailable: {exc}")
        return
    if removed:
        out.print(f"removed {len(removed)} sandbox(es) left by an earlier server")


@reports_errors
def serve(
    listen: Annotated[str | None, typer.Option(help="HOST:PORT to listen on (default 127.0.0.1:8600)")] = None,
    data_dir: DataDir = None,
) -> None:
    """Run the API server (OpenAPI at /openapi.json) with the retention sweeper."""
    config = settings(data_dir, listen=listen)
    store = store_from(config)
    token = bootstrap_admin(store, config.data_dir)
    host, _, port = config.listen.rpartition(":")
    shown = f"[{host}]" if ":" in host else host
    out.print(f"ringfence {config.data_dir}: policy {store.rules.stamp}")
    reconcile_sandboxes(config)
    out.print(f"web address:  http://{shown}:{port}/   (the console at /ui/, API docs at /docs)")
    out.print(f"admin token:  {token.reveal()}")
    out.print(f"try:          curl -H 'Authorization: Bearer {token.reveal()}' http://{shown}:{port}/v1/me")
    sessions = None
    # The demo's git host is trusted exactly (its address and port); every other upstream passes the egress
    # address policy (egress_allow_ranges).
    demo_host = (ipaddress.ip_address("127.0.0.1"), int(port) + 1)
    dialer = upstream_dialer(config, trusted=frozenset({demo_host}) if config.demo else frozenset())
    if sandboxes_available(config):
        sessions = embedded_sessions(store, config, now, dialer)
        demo = None
        if config.demo:
            try:
                demo = start_demo(store, config.data_dir, int(port) + 1, now())
            except OSError as exc:  # the server is still useful without its demo: say why and go on
                why = exc.strerror or exc
                err.print(f"[bold yellow]warning:[/] no demo: its repository host cannot listen on "
                          f"127.0.0.1:{int(port) + 1} ({why}); free that port, or set demo = false")  # fmt: skip
        if demo is not None:
            at = f" --server http://{shown}:{port}" if config.listen != "127.0.0.1:8600" else ""
            out.print("")
            out.print(f"demo: a local repository host at {demo.host.url} holds demo/example; start a session on it:")
            out.print(f"  export RINGFENCE_TOKEN={demo.token.reveal()}")
            out.print(f"  ringfence session start{at} --repo {demo.repository_id}")
            out.print(f'  ringfence session prompt{at} SESSION "add a note"')
            out.print(f"  ringfence session show{at} SESSION      # its egress audit, among the rest")
            out.print(f"  or sign in to the console at http://{shown}:{port}/ui/ with the same token")
    app = create_app(
        store,
        sweep_interval=config.sweep_interval_seconds,
        sessions=sessions,
        ceiling=config.sandbox_limits(),
        network_modes=config.sandbox_network_modes,
        dialer=dialer,
    )
    # What start-up made (modules, the ORM's metadata, the policy) lives as long as the server: kept out of the
    # collector's scans, so collections stay short while pages and proxies run (measured: docs/benchmarks.md).
    gc.collect()
    gc.freeze()
    uvicorn.Server(http_config(app, host.strip("[]"), int(port), log_level="info")).run()


def sandboxes_available(config: Settings) -> bool:
    """Whether this host can run sessions (bubblewrap, seccomp, a usable sandbox directory); says why not."""
    try:
        config.sandbox_backend_for()
    except (SandboxError, OSError) as exc:
        err.print(f"[bold yellow]warning:[/] sessions are unavailable on this host: {exc}")
        return False
    return True
