"""The bubblewrap bridge in particular: B1 holds in proxy mode (the bridge is the only way out of its network
namespace). B6, bytes intact, connections ending with their command and with destroy, the flood bound and an absent
proxy are the conformance suite's, on every backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from ringfence.sandbox import BubblewrapBackend, SandboxSpec
from ringfence.sandbox.spec import PROXY_ENV, ProxyRoutes
from tests.sandbox.conftest import run
from tests.sandbox.test_escapes import host_address, listener, probe


@asynccontextmanager
async def identity_servers(base: Path, *names: str) -> AsyncIterator[dict[str, ProxyRoutes]]:
    """For each session name, an egress and a gateway Unix socket that answer `<name>/<service>:<bytes received>`:
    what the host side knows, by socket alone."""
    servers = []
    routes = {}
    for name in names:
        paths = {}
        for service in ("egress", "gateway"):
            path = base / f"{name}-{service}.sock"

            async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, who=f"{name}/{service}"):
                data = await reader.read()
                writer.write(f"{who}:{data.decode(errors='replace')}".encode())
                await writer.drain()
                writer.close()

            servers.append(await asyncio.start_unix_server(answer, path=str(path)))
            paths[service] = path
        routes[name] = ProxyRoutes(egress=paths["egress"], gateway=paths["gateway"])
    try:
        yield routes
    finally:
        for server in servers:
            server.close()


def test_b1_holds_in_proxy_mode_the_bridge_is_the_only_way_out(backend: BubblewrapBackend, tmp_path: Path) -> None:
    listeners = [listener("127.0.0.1"), listener(host_address())]
    try:
        targets = [("tcp", s.getsockname()[0], s.getsockname()[1]) for s in listeners]

        async def go() -> list[Any]:
            async with identity_servers(tmp_path, "s") as routes:
                sandbox = await backend.create(SandboxSpec(network="proxy", proxies=routes["s"]))
                try:
                    return await probe(
                        sandbox,
                        *targets,
                        ("tcp", "127.0.0.1", 3128),
                        ("tcp", "127.0.0.1", 8080),
                        ("tcp", "127.0.0.1", 3129),
                        ("tcp", "192.0.2.1", 443),
                        ("dns", "example.com"),
                        ("env",),
                    )
                finally:
                    await sandbox.destroy()

        results = run(go())
        for result in results[:2]:
            assert result.startswith("refused"), result
        assert results[2:4] == ["connected", "connected"]
        for result in results[4:7]:
            assert result.startswith("refused"), result
        env = results[7]
        assert {name: env[name] for name in PROXY_ENV} == PROXY_ENV
        for sock in listeners:
            try:
                sock.accept()
                raise AssertionError("a connection from the sandbox reached a host listener")
            except TimeoutError:
                pass
    finally:
        for sock in listeners:
            sock.close()
