"""How `ringfence serve` speaks HTTP/1.1 (uvicorn with h11): the limits of a request's head (SECURITY-CASES A1).

Owns: the server configuration every front end is served with (the API and the console), and the one thing
uvicorn lacks: a deadline for a request's head. uvicorn bounds the head's size (h11's incomplete-event limit) and
closes idle keep-alive connections, but a client sending its head one byte at a time (slowloris) resets the idle
timer with every byte and holds its connection, and a worker's memory, forever. Here a head must be complete
within `HEAD_TIMEOUT` of the connection's start, or of the previous answer's end; otherwise the connection is
closed with nothing answered. Bodies are the front door's concern (ringfence.api.frontdoor).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from ringfence.api.frontdoor import MAX_HEAD_BYTES

HEAD_TIMEOUT = 10.0  # seconds for a whole request head


class HeadDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request's head."""

    head_timeout = HEAD_TIMEOUT
    _head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._head_deadline = self.loop.call_later(self.head_timeout, self._head_expired)

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_expired(self) -> None:
        self._head_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()  # the head never came whole: nothing to answer

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the head arrived (its body may take longer)
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request's head has its own deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def config(app: Any, host: str, port: int, *, head_timeout: float = HEAD_TIMEOUT, **options: Any) -> uvicorn.Config:
    """The server configuration of `ringfence serve` (and of the tests' servers, so they test the same)."""
    protocol: type[HeadDeadlineProtocol] = HeadDeadlineProtocol
    if head_timeout != HEAD_TIMEOUT:
        protocol = type("HeadDeadlineProtocol", (HeadDeadlineProtocol,), {"head_timeout": head_timeout})
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        timeout_keep_alive=5,
        **options,
    )
