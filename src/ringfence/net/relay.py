"""The byte relay shared by the sandbox bridge and the proxies: two connected sockets, both directions.

Owns: the copy loop. Into a Unix socket, bytes go socket -> pipe -> socket with splice(2) inside the kernel and
never through a Python buffer; into a TCP socket they are copied through a pooled buffer, which measured faster
here than splicing into TCP. Each direction has backpressure (its source is not read while its destination is
full), half-close is passed on, byte counts and the last activity time are kept for the audit and the idle
timeout, and an optional token bucket bounds the rate. Written by hand because no maintained library relays with
splice on asyncio's loop (its transports copy through user space: 0.37-0.6 of a direct copy on this kind of
machine, per ARCHITECTURE.md; the relay's figures are in docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
from collections.abc import Callable

_F_SETPIPE_SZ = 1031
PIPE_SIZE = 1 << 20
_SPLICE = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
# A flow holds a pipe only while bytes are in it: an idle tunnel holds none (a sized pipe costs a descriptor pair
# and ~10 KiB of kernel ring). Empty pipes wait here for the next flow, since making and sizing one is a real part
# of a short tunnel's cost. Only a pipe known to be empty (every byte spliced in was spliced out) is kept, so
# nothing crosses from one relay to another.
_POOL: list[tuple[int, int]] = []
_POOL_MAX = 512


def _release(rd: int, wr: int, empty: bool) -> None:
    if empty and len(_POOL) < _POOL_MAX:
        _POOL.append((rd, wr))
        return
    for fd in (rd, wr):
        with contextlib.suppress(OSError):
            os.close(fd)


def _pipe() -> tuple[int, int]:
    try:
        return _POOL.pop()
    except IndexError:
        rd, wr = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        with contextlib.suppress(OSError):
            fcntl.fcntl(wr, _F_SETPIPE_SZ, PIPE_SIZE)
        return rd, wr


class TokenBucket:
    """`rate` bytes per second with bursts of `burst`; shared by every relay of one session. Time is given."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst, self.tokens, self.stamp = rate, burst, burst, now

    def take(self, wanted: int, now: float) -> int:
        """Up to `wanted` bytes granted now (0: wait `delay()` seconds)."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        granted = int(min(wanted, self.tokens))
        self.tokens -= granted
        return max(granted, 0)

    def give_back(self, unused: int) -> None:
        self.tokens = min(self.burst, self.tokens + unused)

    def available(self, now: float) -> float:
        return min(self.burst, self.tokens + (now - self.stamp) * self.rate)

    def delay(self) -> float:
        return max((1.0 - self.tokens) / self.rate, 0.001)


_BUFFERS: list[bytearray] = []
BUFFER_SIZE = 512 * 1024


class _Flow:
    """One direction: src -> dst. Into a Unix socket the bytes are spliced (src -> pipe -> dst, never in user
    space); into a TCP socket they are copied through a pooled buffer (recv_into, send), because splicing into TCP
    measured slower here (0.44 of a direct copy, against 0.6 for the copy; docs/design.md)."""

    __slots__ = ("buf", "bytes", "copy", "done", "dst", "eof", "limit", "offset", "pending", "rd", "reading",
                 "relay", "src", "wr", "writing")  # fmt: skip

    def __init__(self, relay: Relay, src: socket.socket, dst: socket.socket, limit: TokenBucket | None) -> None:
        self.relay, self.src, self.dst, self.limit = relay, src, dst, limit
        self.copy = dst.family != socket.AF_UNIX
        self.rd, self.wr = -1, -1  # taken when bytes arrive, given back when they have all left
        self.buf: bytearray | None = None  # likewise, in copy mode
        self.pending, self.bytes, self.offset = 0, 0, 0
        self.eof = self.reading = self.writing = self.done = False

    def start(self) -> None:
        self._read(True)

    def _read(self, on: bool) -> None:
        if on != self.reading and not self.relay.closed:
            loop = self.relay.loop
            if on:
                loop.add_reader(self.src.fileno(), self._on_readable)
            else:
                loop.remove_reader(self.src.fileno())
            self.reading = on

    def _write(self, on: bool) -> None:
        if on != self.writing and not self.relay.closed:
            loop = self.relay.loop
            if on:
                loop.add_writer(self.dst.fileno(), self._flush)
            else:
                loop.remove_writer(self.dst.fileno())
            self.writing = on

    def _resume(self) -> None:
        if not self.relay.closed and not self.eof and not self.pending:
            self._read(True)

    def _on_readable(self) -> None:
        wanted = PIPE_SIZE
        if self.limit is not None:
            wanted = self.limit.take(PIPE_SIZE, self.relay.loop.time())
            if wanted == 0:
                self._read(False)
                self.relay.loop.call_later(self.limit.delay(), self._resume)
                return
        try:
            if self.copy:
                if self.buf is None:
                    self.buf = _BUFFERS.pop() if _BUFFERS else bytearray(BUFFER_SIZE)
                self.offset = 0
                moved = self.src.recv_into(self.buf, min(wanted, BUFFER_SIZE))
            else:
                if self.wr < 0:
                    self.rd, self.wr = _pipe()
                moved = os.splice(self.src.fileno(), self.wr, wanted, flags=_SPLICE)
        except BlockingIOError:
            moved = -1
        except OSError:
            self.relay.abort()
            return
        if self.limit is not None:
            self.limit.give_back(wanted - max(moved, 0))
        if moved < 0:  # a spurious wake-up: nothing to hold a pipe or buffer for
            if self.pending == 0:
                self._give_back()
            return
        if moved == 0:
            self.eof = True
            self._read(False)
        self.pending += moved
        self.bytes += moved
        self.relay.last_active = self.relay.loop.time()
        self._flush()

    def _flush(self) -> None:
        while self.pending:
            try:
                if self.buf is not None:
                    with memoryview(self.buf) as view:
                        moved = self.dst.send(view[self.offset : self.offset + self.pending])
                    self.offset += moved
                else:
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
        self._give_back()
        if self.eof:
            with contextlib.suppress(OSError):
                self.dst.shutdown(socket.SHUT_WR)
            self.done = True
            self.relay.flow_done()
        else:
            self._read(True)

    def _give_back(self) -> None:
        if self.rd >= 0:
            _release(self.rd, self.wr, self.pending == 0)
            self.rd = self.wr = -1
        if self.buf is not None:
            if len(_BUFFERS) < 16:
                _BUFFERS.append(self.buf)  # a buffer's old bytes are never sent: send() takes only what recv wrote
            self.buf = None

    def stop(self) -> None:
        self._read(False)
        self._write(False)
        self._give_back()


class Relay:
    """Two connected, non-blocking sockets relayed both ways until both sides have closed (or `abort`).
    `on_close` runs once, when the relay ends, with the relay (its byte counts are final then)."""

    def __init__(
        self,
        a: socket.socket,
        b: socket.socket,
        *,
        on_close: Callable[[Relay], None] | None = None,
        limit: TokenBucket | None = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.a, self.b, self.on_close = a, b, on_close
        self.closed = False
        self.last_active = self.loop.time()
        self.flows = (_Flow(self, a, b, limit), _Flow(self, b, a, limit))
        self.finished: asyncio.Future[None] = self.loop.create_future()

    @property
    def bytes_a_to_b(self) -> int:
        return self.flows[0].bytes

    @property
    def bytes_b_to_a(self) -> int:
        return self.flows[1].bytes

    def start(self) -> Relay:
        for flow in self.flows:
            flow.start()
        return self

    def flow_done(self) -> None:
        if all(flow.done for flow in self.flows):
            self.abort()

    def abort(self) -> None:
        if self.closed:
            return
        for flow in self.flows:
            flow.stop()
        self.closed = True
        self.a.close()
        self.b.close()
        if not self.finished.done():
            self.finished.set_result(None)
        if self.on_close is not None:
            self.on_close(self)
