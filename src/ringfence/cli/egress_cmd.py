"""`ringfence egress serve`: the egress proxy alone, for one session (a local tool; tests and benchmarks use it)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import h11
import typer

from ringfence.cli.console import err, exits_on, out
from ringfence.egress.audit import BatchedAudit, JsonlWriter
from ringfence.egress.proxy import EgressProxy, ProxyLimits
from ringfence.egress.rules import EgressPolicy, RuleError
from ringfence.net.addresses import AddressPolicy
from ringfence.net.hostport import HostError, parse_target
from ringfence.net.interfaces import host_addresses
from ringfence.net.resolve import CachingResolver, DnsResolver, PinnedResolver

app = typer.Typer(no_args_is_help=True, help="The egress security proxy.")


@app.callback()
def group() -> None:
    """The egress security proxy."""  # a group, even with one command: `ringfence egress serve`


def _pins(entries: list[str]) -> dict[str, list[str]]:
    pins: dict[str, list[str]] = {}
    for entry in entries:
        name, sep, address = entry.partition("=")
        if not sep or not name or not address:
            raise RuleError(f"--resolve {entry!r} is not NAME=ADDRESS")
        pins.setdefault(name.lower().rstrip("."), []).append(address.strip("[]"))
    return pins


@app.command("serve")
@exits_on(OSError, ValueError)
def serve(
    listen: Annotated[str, typer.Option(help="HOST:PORT to listen on")] = "127.0.0.1:3128",
    unix: Annotated[
        Path | None, typer.Option(help="also listen on this Unix socket (for `sandbox exec --egress-socket`)")
    ] = None,
    mode: Annotated[str, typer.Option(help="none, trusted, custom or full")] = "trusted",
    allow: Annotated[list[str] | None, typer.Option(help="allow HOST, *.DOMAIN, with :PORT[,PORT] (repeat)")] = None,
    deny: Annotated[list[str] | None, typer.Option(help="deny HOST or *.DOMAIN; wins over everything (repeat)")] = None,
    allow_range: Annotated[
        list[str] | None, typer.Option(help="CIDR the proxy may dial though not public (repeat)")
    ] = None,
    report: Annotated[bool, typer.Option(help="allow what the rules deny, recording 'would deny'")] = False,
    deny_telemetry: Annotated[bool, typer.Option(help="deny telemetry and error-reporting hosts")] = False,
    audit: Annotated[Path | None, typer.Option(help="append one JSON line per connection attempt here")] = None,
    metrics: Annotated[str | None, typer.Option(help="HOST:PORT serving Prometheus metrics at /metrics")] = None,
    resolve: Annotated[list[str] | None, typer.Option(help="pin NAME=ADDRESS instead of DNS (repeat)")] = None,
    session: Annotated[str, typer.Option(help="the session name written in audit records")] = "default",
    bytes_per_second: Annotated[float | None, typer.Option(help="bandwidth limit of the session")] = None,
    max_concurrent: Annotated[int, typer.Option(help="most connections open at once")] = 256,
    new_per_second: Annotated[float, typer.Option(help="most new connections per second")] = 50.0,
) -> None:
    """Run the proxy: CONNECT, absolute-form HTTP and SOCKS5 (socks5h) on LISTEN, decided by the mode and lists,
    audited."""
    try:
        policy = EgressPolicy.build(mode, allow or [], deny or [], report=report, deny_telemetry=deny_telemetry)
        addresses = AddressPolicy.parse(allow_range or [], host_addresses())
        where = parse_target(listen, "--listen")
        metrics_at = parse_target(metrics, "--metrics") if metrics else None
        pins = _pins(resolve or [])
    except (RuleError, HostError, ValueError) as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    limits = ProxyLimits(
        bytes_per_second=bytes_per_second, max_concurrent=max_concurrent, new_per_second=new_per_second
    )
    asyncio.run(_serve(policy, addresses, where.host, where.port, audit, metrics_at, pins, session, limits, unix))


async def _serve(
    policy: EgressPolicy,
    addresses: AddressPolicy,
    host: str,
    port: int,
    audit_file: Path | None,
    metrics_at: object,
    pins: dict[str, list[str]],
    session: str,
    limits: ProxyLimits,
    unix: Path | None,
) -> None:
    def clock() -> datetime:
        return datetime.now(UTC)

    audit = BatchedAudit(JsonlWriter(audit_file), lambda: clock().isoformat()) if audit_file else None
    if audit is not None:
        audit.start()
    resolver = CachingResolver(PinnedResolver(pins, DnsResolver()))
    proxy = EgressProxy(addresses, resolver, audit, clock=clock)
    proxy.add_session(session, policy, limits)
    bound = await proxy.listen_tcp(session, host, port)
    if unix is not None:
        await proxy.listen_unix(session, unix)
    metrics_server = None
    if metrics_at is not None:
        metrics_server = await _metrics_server(proxy, metrics_at.host, metrics_at.port)  # type: ignore[attr-defined]
    out.print(f"egress proxy on {bound[0]}:{bound[1]} (mode {policy.mode}{', report' if policy.report else ''})")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await proxy.close()
    if metrics_server is not None:
        metrics_server.close()
    if unix is not None:
        unix.unlink(missing_ok=True)
    if audit is not None:
        await audit.close()  # a clean stop loses no record


async def _metrics_server(proxy: EgressProxy, host: str, port: int) -> asyncio.Server:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        with contextlib.suppress(Exception):
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await asyncio.wait_for(reader.read(8192), 10))
                    continue
                if isinstance(event, h11.Request):
                    found = event.target.split(b"?")[0] == b"/metrics"
                    body = proxy.metrics.render().encode() if found else b"not found\n"
                    headers = [("Content-Type", "text/plain; version=0.0.4"), ("Content-Length", str(len(body)))]
                    writer.write(conn.send(h11.Response(status_code=200 if found else 404, headers=headers)))
                    writer.write(conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
                    await writer.drain()
                break
        writer.close()

    return await asyncio.start_server(answer, host, port)
