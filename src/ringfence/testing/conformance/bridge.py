"""Conformance checks of the proxy bridge (mode `proxy`), measured from inside and at the host's sockets: each
sandbox reaches only its own session's sockets (B6), bytes cross intact both ways, a bridged connection ends with
its command and with destroy, a flood of connections is bounded on the host's side, and an absent proxy only closes
the connection."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

from ringfence.sandbox.spec import BRIDGE_CONNECTIONS, ProxyRoutes
from ringfence.testing.conformance.harness import Harness, sandbox


@contextlib.asynccontextmanager
async def _holding(path: Path) -> AsyncIterator[tuple[asyncio.Queue[bytes], list[int]]]:
    """A host socket that answers `ack` to each connection's first bytes, reads it to its end and queues what came;
    `[open now, most at once]`. A program inside waits for the `ack`: then its connection is through the bridge."""
    received: asyncio.Queue[bytes] = asyncio.Queue()
    counts = [0, 0]

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        counts[0] += 1
        counts[1] = max(counts)
        try:
            first = await reader.read(64)
            if first:
                writer.write(b"ack")
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
            await received.put(first + await reader.read())  # returns at EOF only
        finally:
            counts[0] -= 1
            writer.close()

    server = await asyncio.start_unix_server(hold, str(path))
    try:
        yield received, counts
    finally:
        server.close()


async def proxies_reach_only_their_own_session(h: Harness) -> None:
    """Both bridged ports (the egress proxy's 3128, the gateway's 8080) of each sandbox reach that session's own
    sockets and no other's: the socket is the session's identity (B6)."""
    paths: dict[tuple[str, int], Path] = {}
    servers = []
    for name in ("a", "b"):
        for port in (3128, 8080):
            path = h.scratch / f"{name}-{port}.sock"

            async def answer(
                reader: asyncio.StreamReader, writer: asyncio.StreamWriter, said: str = f"{name}:{port}"
            ) -> None:
                await reader.read(10)
                writer.write(f"session-{said}".encode())
                await writer.drain()
                writer.close()

            servers.append(await asyncio.start_unix_server(answer, str(path)))
            paths[(name, port)] = path
    backend = h.make()
    boxes = {
        name: await backend.create(
            h.spec(network="proxy", proxies=ProxyRoutes(paths[(name, 3128)], paths[(name, 8080)]))
        )
        for name in ("a", "b")
    }
    ask = (
        "import socket\nfor port in (3128, 8080):\n    s = socket.create_connection(('127.0.0.1', port), timeout=5)\n"
        "    s.sendall(b'x')\n    print(s.recv(30).decode())\n"
    )
    try:
        answers = {
            name: (await box.run(["python3", "-c", ask], timeout=30)).stdout.split() for name, box in boxes.items()
        }
    finally:
        for box in boxes.values():
            await box.destroy()
        for server in servers:
            server.close()
    assert answers == {
        "a": [b"session-a:3128", b"session-a:8080"],
        "b": [b"session-b:3128", b"session-b:8080"],
    }, answers


async def bytes_cross_the_bridge_intact(h: Harness) -> None:
    """3 MB each way through the egress port: the host's digest of what it got is the sandbox's, and back."""
    path = h.scratch / "bulk.sock"

    async def echo_digest(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()
        writer.write(hashlib.sha256(data).hexdigest().encode() + b"\n" + data)
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(echo_digest, str(path))
    send = (
        "import hashlib, os, socket\ndata = os.urandom(3_000_000)\n"
        "s = socket.create_connection(('127.0.0.1', 3128), timeout=30)\ns.sendall(data)\n"
        "s.shutdown(socket.SHUT_WR)\nback = b''\nwhile chunk := s.recv(65536):\n    back += chunk\n"
        "digest, echoed = back.split(b'\\n', 1)\n"
        "print(digest.decode() == hashlib.sha256(data).hexdigest(), echoed == data, len(back))\n"
    )
    _, box = await sandbox(h, network="proxy", proxies=ProxyRoutes(egress=path))
    try:
        done = await box.run(["python3", "-c", send], timeout=120)
    finally:
        await box.destroy()
        server.close()
    assert done.stdout.split() == [b"True", b"True", str(65 + 3_000_000).encode()], done


async def a_bridged_connection_ends_with_its_command(h: Harness) -> None:
    """A daemon that keeps a bridged connection open loses it when its command ends: the host side sees EOF."""
    path = h.scratch / "held.sock"
    daemon = (  # the command ends once its daemon's connection is through, and the daemon holds it open
        "import os, socket, time\nr, w = os.pipe()\nif os.fork() == 0:\n    os.setsid()\n"
        "    s = socket.create_connection(('127.0.0.1', 3128)); s.sendall(b'hi'); s.recv(3)\n"
        "    os.write(w, b'x'); time.sleep(600)\nos.read(r, 1)\n"
    )
    async with _holding(path) as (received, _):
        _, box = await sandbox(h, network="proxy", proxies=ProxyRoutes(egress=path))
        try:
            done = await box.run(["python3", "-c", daemon], timeout=60)
            got = await asyncio.wait_for(received.get(), 15)
        finally:
            await box.destroy()
    assert done.exit.code == 0 and got == b"hi", (done, got)


async def destroy_cuts_bridged_connections(h: Harness) -> None:
    path = h.scratch / "cut.sock"
    hold = (
        "import socket, time\ns = socket.create_connection(('127.0.0.1', 3128)); s.sendall(b'held'); s.recv(3)\n"
        "print('connected', flush=True)\ntime.sleep(600)\n"
    )
    async with _holding(path) as (received, _):
        _, box = await sandbox(h, network="proxy", proxies=ProxyRoutes(egress=path))
        stream = box.exec(["python3", "-c", hold], timeout=None)
        try:
            first = await anext(stream)
            await box.destroy()  # the stream is still open: destroy alone must cut the connection
            got = await asyncio.wait_for(received.get(), 15)
        finally:
            await stream.aclose()
            await box.destroy()
    assert getattr(first, "data", b"") == b"connected\n" and got == b"held"


async def a_flood_of_connections_is_bounded(h: Harness) -> None:
    """The sandbox opens more connections than the bound; the host's socket never holds more than the bound."""
    path = h.scratch / "flood.sock"
    flood = (
        "import socket, time\nheld = []\nfor _ in range(COUNT):\n    try:\n"
        "        held.append(socket.create_connection(('127.0.0.1', 3128), timeout=5))\n    except OSError:\n"
        "        break\ntime.sleep(2)\nprint(len(held))\n"
    ).replace("COUNT", str(BRIDGE_CONNECTIONS + 100))
    async with _holding(path) as (_, counts):
        _, box = await sandbox(h, network="proxy", proxies=ProxyRoutes(egress=path))
        try:
            done = await box.run(["python3", "-c", flood], timeout=120)
        finally:
            await box.destroy()
    assert int(done.stdout or b"0") >= BRIDGE_CONNECTIONS, done  # the sandbox did open them
    assert counts[1] == BRIDGE_CONNECTIONS, counts  # the host held the bound, no more


async def an_absent_proxy_only_closes_the_connection(h: Harness) -> None:
    """No one listens on the session's egress socket: a connection is accepted, then closed; the gateway port,
    given no socket, refuses; the sandbox goes on."""
    exchange = (
        "import socket\ntry:\n    s = socket.create_connection(('127.0.0.1', 3128), timeout=5)\n"
        "    s.sendall(b'hello'); s.shutdown(socket.SHUT_WR); print('answer', repr(s.recv(100)))\n"
        "except OSError as exc:\n    print('closed', type(exc).__name__)\n"
        "try:\n    socket.create_connection(('127.0.0.1', 8080), timeout=5); print('gateway reached')\n"
        "except OSError as exc:\n    print('gateway', type(exc).__name__)\n"
    )
    _, box = await sandbox(h, network="proxy", proxies=ProxyRoutes(egress=h.scratch / "nobody-listens.sock"))
    try:
        done = await box.run(["python3", "-c", exchange], timeout=60)
        after = await box.run(["echo", "still works"])
    finally:
        await box.destroy()
    lines = done.stdout.decode().splitlines()
    assert lines[0] in ("answer b''",) or lines[0].startswith("closed"), lines
    assert lines[1] == "gateway ConnectionRefusedError", lines
    assert after.stdout == b"still works\n"
