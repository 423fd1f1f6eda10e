"""The proxy bridge: 127.0.0.1:PORT inside a sandbox, relayed to that session's Unix socket on the host.

Owns: making a TCP listener inside a sandbox's network namespace from the host (a short-lived thread joins the
namespace with setns, binds, and leaves: no process of ours runs in the sandbox, and the sandbox never needs an
AF_UNIX socket, which its seccomp filter refuses), accepting on it from the host's event loop, and relaying each
connection to the host Unix socket of its port.

Identity: a listener exists in exactly one sandbox's namespace and relays to exactly the socket the sandbox was
created with, so whatever connects through it *is* that session. Nothing the sandbox sends is read here.

The copy loop is splice(2): bytes go socket -> pipe -> socket inside the kernel and never through a Python buffer.
Written by hand because no maintained library relays with splice on asyncio's loop (its transports copy through
user space: 0.37-0.6 of a direct copy on this kind of machine, per ARCHITECTURE.md; splice's figure is in
docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import fcntl
import logging
import os
import socket
import threading
from collections.abc import Mapping
from pathlib import Path

from ringfence.sandbox.spec import SandboxError

log = logging.getLogger("ringfence.sandbox.bridge")

_CLONE_NEWNET = 0x40000000
_IP_FREEBIND = 15  # the listener may bind 127.0.0.1 before bwrap has brought the sandbox's loopback up
_F_SETPIPE_SZ = 1031
_PIPE_SIZE = 1 << 20
_UNIX_SNDBUF = 4 << 20  # a cap, not an allocation: buffers are taken only while bytes are in flight
_SPLICE = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
MAX_CONNECTIONS = 256  # per listener: a flood of connects costs the host file descriptors, so it is bounded
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


class _Flow:
    """One direction of a relay: src -> pipe -> dst, with backpressure (src is not read while dst is full)."""

    __slots__ = ("done", "dst", "eof", "pending", "rd", "reading", "relay", "src", "wr", "writing")

    def __init__(self, relay: _Relay, src: socket.socket, dst: socket.socket) -> None:
        self.relay, self.src, self.dst = relay, src, dst
        self.rd, self.wr = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        with contextlib.suppress(OSError):
            fcntl.fcntl(self.wr, _F_SETPIPE_SZ, _PIPE_SIZE)
        self.pending, self.eof, self.reading, self.writing, self.done = 0, False, False, False, False

    def start(self) -> None:
        self._read(True)

    def _read(self, on: bool) -> None:
        if on != self.reading:
            loop = self.relay.loop
            if on:
                loop.add_reader(self.src.fileno(), self._on_readable)
            else:
                loop.remove_reader(self.src.fileno())
            self.reading = on

    def _write(self, on: bool) -> None:
        if on != self.writing:
            loop = self.relay.loop
            if on:
                loop.add_writer(self.dst.fileno(), self._flush)
            else:
                loop.remove_writer(self.dst.fileno())
            self.writing = on

    def _on_readable(self) -> None:
        try:
            moved = os.splice(self.src.fileno(), self.wr, _PIPE_SIZE, flags=_SPLICE)
        except BlockingIOError:
            return
        except OSError:
            self.relay.abort()
            return
        if moved == 0:
            self.eof = True
            self._read(False)
        self.pending += moved
        self._flush()

    def _flush(self) -> None:
        while self.pending:
            try:
                moved = os.splice(self.rd, self.dst.fileno(), self.pending, flags=_SPLICE)
            except BlockingIOError:
                self._read(False)
                self._write(True)
                return
            except OSError:
                self.relay.abort()
                return
            self.pending -= moved
        self._write(False)
        if self.eof:
            with contextlib.suppress(OSError):
                self.dst.shutdown(socket.SHUT_WR)
            self.done = True
            self.relay.flow_done()
        else:
            self._read(True)

    def stop(self) -> None:
        self._read(False)
        self._write(False)
        for fd in (self.rd, self.wr):
            with contextlib.suppress(OSError):
                os.close(fd)


class _Relay:
    """One bridged connection: the sandbox's TCP connection and the host Unix socket, both directions."""

    def __init__(self, loop: asyncio.AbstractEventLoop, inside: socket.socket, host: socket.socket, owner: _Listener):
        self.loop, self.inside, self.host, self.owner = loop, inside, host, owner
        self.flows = (_Flow(self, inside, host), _Flow(self, host, inside))
        self.closed = False

    def start(self) -> None:
        for flow in self.flows:
            flow.start()

    def flow_done(self) -> None:
        if all(flow.done for flow in self.flows):
            self.abort()

    def abort(self) -> None:
        if self.closed:
            return
        self.closed = True
        for flow in self.flows:
            flow.stop()
        self.inside.close()
        self.host.close()
        self.owner.relays.discard(self)


class _Listener:
    """One in-sandbox port: accepts, connects to the host socket, starts a relay per connection."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, target: Path) -> None:
        self.loop, self.sock, self.target = loop, sock, target
        self.relays: set[_Relay] = set()
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
        relay = _Relay(self.loop, inside, host, self)
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
