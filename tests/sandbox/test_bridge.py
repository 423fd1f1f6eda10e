"""The proxy bridge: 127.0.0.1:3128 and :8080 inside a sandbox reach that session's host Unix sockets, and only
those (S-BOX B6: a sandbox cannot present itself as another session); relayed bytes arrive intact."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from ringfence.sandbox import BubblewrapBackend, SandboxSpec
from ringfence.sandbox.bridge import MAX_CONNECTIONS
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


def test_b6_each_sandbox_reaches_only_its_own_sessions_sockets(backend: BubblewrapBackend, tmp_path: Path) -> None:
    async def go() -> tuple[list[Any], list[Any], str]:
        async with identity_servers(tmp_path, "alice", "bob") as routes:
            a = await backend.create(SandboxSpec(network="proxy", proxies=routes["alice"]))
            b = await backend.create(SandboxSpec(network="proxy", proxies=routes["bob"]))
            try:
                from_a = await probe(
                    a,
                    ("exchange", "127.0.0.1", 3128, "I am bob"),
                    ("exchange", "127.0.0.1", 8080, "Proxy-Authorization: session bob"),
                    ("unix_connect", str(routes["bob"].egress)),
                    ("unix_connect", "\0ringfence-bob"),
                    ("listdir", str(tmp_path)),
                )
                from_b = await probe(b, ("exchange", "127.0.0.1", 3128, "hello"))
                return from_a, from_b, a.id
            finally:
                await a.destroy()
                await b.destroy()

    from_a, from_b, _ = run(go())
    assert from_a[0] == "alice/egress:I am bob"  # what it claims is data; the socket says who it is
    assert from_a[1] == "alice/gateway:Proxy-Authorization: session bob"
    for attempt in from_a[2:]:  # the other session's sockets are neither visible nor reachable
        assert isinstance(attempt, str) and attempt.startswith("refused"), attempt
    assert from_b == ["bob/egress:hello"]


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


def test_bulk_bytes_cross_the_bridge_intact_both_ways(backend: BubblewrapBackend, tmp_path: Path) -> None:
    """5 MB up, its SHA-256 back after a half-close, through the splice relay."""
    path = tmp_path / "sink.sock"
    script = (
        "import hashlib, os, socket\n"
        "data = os.urandom(5_000_000)\n"
        "with socket.create_connection(('127.0.0.1', 3128)) as s:\n"
        "    s.sendall(data); s.shutdown(socket.SHUT_WR)\n"
        "    answer = b''\n"
        "    while chunk := s.recv(1 << 16): answer += chunk\n"
        "print(answer[:64].decode() == hashlib.sha256(data).hexdigest(), len(answer))\n"
    )

    async def go() -> bytes:
        async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            data = await reader.read()
            writer.write(hashlib.sha256(data).hexdigest().encode() + bytes(3_000_000))  # and 3 MB down
            await writer.drain()
            writer.close()

        server = await asyncio.start_unix_server(sink, path=str(path))
        sandbox = await backend.create(SandboxSpec(network="proxy", proxies=ProxyRoutes(egress=path)))
        try:
            done = await sandbox.run(["/usr/bin/python3", "-c", script], timeout=60)
            assert done.code == 0, done.stderr
            return done.stdout
        finally:
            await sandbox.destroy()
            server.close()

    assert run(go()).split() == [b"True", str(64 + 3_000_000).encode()]


def test_bridged_connections_end_with_the_command(backend: BubblewrapBackend, tmp_path: Path) -> None:
    """A daemon that keeps a bridged connection open loses it when its command ends: the host side sees EOF."""
    path = tmp_path / "egress.sock"
    script = (
        "import os, socket, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid(); s = socket.create_connection(('127.0.0.1', 3128)); s.sendall(b'hi'); time.sleep(600)\n"
        "time.sleep(0.5)\n"
    )

    async def go() -> bytes:
        received: asyncio.Queue[bytes] = asyncio.Queue()

        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await received.put(await reader.read())  # returns at EOF only
            writer.close()

        server = await asyncio.start_unix_server(hold, path=str(path))
        sandbox = await backend.create(SandboxSpec(network="proxy", proxies=ProxyRoutes(egress=path)))
        try:
            done = await sandbox.run(["/usr/bin/python3", "-c", script], timeout=30)
            assert done.code == 0, done.stderr
            return await asyncio.wait_for(received.get(), 10)
        finally:
            await sandbox.destroy()
            server.close()

    assert run(go()) == b"hi"


def test_destroy_cuts_bridged_connections_while_the_output_stream_is_still_open(
    backend: BubblewrapBackend, tmp_path: Path
) -> None:
    path = tmp_path / "egress.sock"
    script = (
        "import socket, time\n"
        "s = socket.create_connection(('127.0.0.1', 3128)); s.sendall(b'held'); print('connected', flush=True)\n"
        "time.sleep(600)\n"
    )

    async def go() -> bytes:
        received: asyncio.Queue[bytes] = asyncio.Queue()

        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await received.put(await reader.read())
            writer.close()

        server = await asyncio.start_unix_server(hold, path=str(path))
        sandbox = await backend.create(SandboxSpec(network="proxy", proxies=ProxyRoutes(egress=path)))
        stream = sandbox.exec(["/usr/bin/python3", "-c", script], timeout=None)
        try:
            first = await anext(stream)
            assert getattr(first, "data", b"") == b"connected\n"
            await sandbox.destroy()  # the stream is still open: destroy alone must cut the connection
            return await asyncio.wait_for(received.get(), 10)
        finally:
            await stream.aclose()
            server.close()

    assert run(go()) == b"held"


def test_a_flood_of_connections_is_bounded(backend: BubblewrapBackend, tmp_path: Path) -> None:
    """Connections beyond the per-listener bound are closed at once; the host relays at most MAX_CONNECTIONS."""
    path = tmp_path / "egress.sock"

    async def go() -> tuple[list[Any], int]:
        open_now, most = 0, 0

        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal open_now, most
            open_now += 1
            most = max(most, open_now)
            try:
                await reader.read()
            finally:
                open_now -= 1
                writer.close()

        server = await asyncio.start_unix_server(hold, path=str(path))
        sandbox = await backend.create(SandboxSpec(network="proxy", proxies=ProxyRoutes(egress=path)))
        try:
            return await probe(sandbox, ("connect_many", "127.0.0.1", 3128, MAX_CONNECTIONS + 100)), most
        finally:
            await sandbox.destroy()
            server.close()

    results, most = run(go())
    assert results[0] >= MAX_CONNECTIONS  # the sandbox did open them (the TCP backlog accepts the rest)
    assert most == MAX_CONNECTIONS  # but the host held no more than the bound


def test_an_absent_proxy_closes_the_connection_and_nothing_else(backend: BubblewrapBackend, tmp_path: Path) -> None:
    async def go() -> list[Any]:
        sandbox = await backend.create(
            SandboxSpec(network="proxy", proxies=ProxyRoutes(egress=tmp_path / "nobody-listens.sock"))
        )
        try:
            return await probe(sandbox, ("exchange", "127.0.0.1", 3128, "hello"), ("tcp", "127.0.0.1", 8080))
        finally:
            await sandbox.destroy()

    answer, gateway = run(go())
    # Connected, then closed (or reset, since "hello" was never read): the proxy is not there.
    assert answer == "" or answer.startswith("closed:"), answer
    assert gateway.startswith("refused: ConnectionRefusedError")  # no gateway route was given: no listener
