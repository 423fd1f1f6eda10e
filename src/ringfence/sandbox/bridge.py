"""The proxy bridge: 127.0.0.1:PORT inside a sandbox, relayed to that session's Unix socket on the host.

Owns: making a TCP listener inside a sandbox's network namespace from the host (a short-lived thread joins the
namespace with setns, binds, and leaves: no process of ours runs in the sandbox, and the sandbox never needs an
AF_UNIX socket, which its seccomp filter refuses), accepting on it from the host's event loop, and relaying each
connection to the host Unix socket of its port.

Identity: a listener exists in exactly one sandbox's namespace and relays to exactly the socket the sandbox was
created with, so whatever connects through it *is* that session. Nothing the sandbox sends is read here.

The copy loop is ringfence.net.relay (splice(2): bytes never pass through Python).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import logging
import os
import socket
import threading
from collections.abc import Mapping
from pathlib import Path

from ringfence.net.relay import Relay
from ringfence.sandbox.spec import BRIDGE_CONNECTIONS, SandboxError

log = logging.getLogger("ringfence.sandbox.bridge")

_CLONE_NEWNET = 0x40000000
_IP_FREEBIND = 15  # the listener may bind 127.0.0.1 before bwrap has brought the sandbox's loopback up
_UNIX_SNDBUF = 4 << 20  # a cap, not an allocation: buffers are taken only while bytes are in flight
MAX_CONNECTIONS = BRIDGE_CONNECTIONS  # per listener: a flood of connects costs the host file descriptors
_libc = ctypes.CDLL(None, use_errno=True)


def listen_in_netns(pid: int, ports: list[int]) -> concurrent.futures.Future[list[socket.socket]]:
    """Listening sockets on 127.0.0.1:PORT inside the network namespace of process `pid`, made by a thread of
    its own (setns changes the calling thread; that thread ends right after)."""
    result: concurrent.futures.Future[list[socket.socket]] = concurrent.futures.Future()

    def work() -> None:
        try:
            result.set_result(_listen_here(pid, ports))
        except BaseException as exc:  # handed to the caller, whatever it is
            result.set_exception(exc)

    thread = threading.Thread(target=work, name=f"bridge-netns-{pid}", daemon=True)
    thread.start()
    return result


def _listen_here(pid: int, ports: list[int]) -> list[socket.socket]:
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise SandboxError(f"the sandbox process {pid} ended before its bridge was made") from None
        try:
            if _libc.setns(target, _CLONE_NEWNET) != 0:
                code = ctypes.get_errno()
                raise SandboxError(
                    f"cannot enter the sandbox's network namespace ({os.strerror(code)}): network mode 'proxy' "
                    "needs ringfence to run as root"
                )
        finally:
            os.close(target)
        sockets: list[socket.socket] = []
        try:
            for port in ports:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(sock)
                sock.setsockopt(socket.SOL_IP, _IP_FREEBIND, 1)
                sock.bind(("127.0.0.1", port))
                sock.listen(128)
                sock.setblocking(False)
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        finally:
            if _libc.setns(own, _CLONE_NEWNET) != 0:  # pragma: no cover - the thread ends either way
                log.error("bridge thread could not return to the host network namespace")
        return sockets
    finally:
        os.close(own)


class _Listener:
    """One in-sandbox port: accepts, connects to the host socket, starts a relay per connection."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, target: Path) -> None:
        self.loop, self.sock, self.target = loop, sock, target
        self.relays: set[Relay] = set()
        self.connecting: set[asyncio.Task[None]] = set()
        loop.add_reader(sock.fileno(), self._on_accept)

    def _on_accept(self) -> None:
        try:
            inside, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # e.g. EMFILE: refuse this one, keep serving
            log.warning("bridge accept failed: %s", exc)
            return
        if len(self.relays) + len(self.connecting) >= MAX_CONNECTIONS:
            inside.close()
            return
        inside.setblocking(False)
        task = self.loop.create_task(self._connect(inside))
        self.connecting.add(task)
        task.add_done_callback(self.connecting.discard)

    async def _connect(self, inside: socket.socket) -> None:
        host = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # A Unix socket's default send buffer (~200 KiB) fills before the 1 MiB pipe drains, so the relay stalls
        # and wakes far more often; TCP autotunes its own. Measured: steadier and faster bulk copies.
        host.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _UNIX_SNDBUF)
        host.setblocking(False)
        try:
            await self.loop.sock_connect(host, str(self.target))
        except OSError as exc:
            # The session's proxy is not listening: the agent sees its connection closed, the operator a log line.
            log.warning("bridge cannot reach %s: %s", self.target.name, exc.strerror or exc)
            host.close()
            inside.close()
            return
        except BaseException:
            host.close()
            inside.close()
            raise
        relay = Relay(inside, host, on_close=self.relays.discard)
        self.relays.add(relay)
        relay.start()

    def close(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        for task in list(self.connecting):
            task.cancel()
        for relay in list(self.relays):
            relay.abort()


def _close_all(made: concurrent.futures.Future[list[socket.socket]]) -> None:
    if not made.cancelled() and made.exception() is None:
        for sock in made.result():
            sock.close()


class Bridge:
    """The listeners of one sandboxed command (each command has its own network namespace)."""

    def __init__(self, listeners: list[_Listener]) -> None:
        self._listeners = listeners

    @classmethod
    async def open(cls, pid: int, routes: Mapping[int, Path]) -> Bridge:
        """Listen on each `routes` port inside the namespace of `pid`, relaying to the mapped host socket."""
        ports = sorted(routes)
        made = listen_in_netns(pid, ports)
        try:
            sockets = await asyncio.wrap_future(made)
        except asyncio.CancelledError:
            made.add_done_callback(_close_all)  # the thread still finishes: its sockets must not leak
            raise
        loop = asyncio.get_running_loop()
        return cls([_Listener(loop, sock, routes[port]) for sock, port in zip(sockets, ports, strict=True)])

    @property
    def connections(self) -> int:
        return sum(len(listener.relays) for listener in self._listeners)

    def close(self) -> None:
        """Stop listening and cut every bridged connection (the command has ended)."""
        for listener in self._listeners:
            listener.close()
        self._listeners = []
