"""The shared byte relay (ringfence.net.relay) is byte-exact both ways, for every size, write pattern and order of
half-closes, into TCP (pooled-buffer copy) and into Unix sockets (splice), with and without a rate limit; and its
counts are what went through. Real sockets; the peers are plain blocking threads."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import threading

from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from ringfence.net.relay import Relay, TokenBucket


def _pair(kind: str) -> tuple[socket.socket, socket.socket]:
    if kind == "unix":
        return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with socket.create_server(("127.0.0.1", 0)) as server:
        near = socket.create_connection(server.getsockname())
        far, _ = server.accept()
    return near, far


def _peer(sock: socket.socket, payload: bytes, pieces: list[int], close_first: bool, got: dict[str, bytes]) -> None:
    """Send `payload` in pieces, half-close, and read to the end; or read to the end first, then send."""

    def send() -> None:
        start = 0
        for size in [*pieces, len(payload)]:
            if start < len(payload):
                sock.sendall(payload[start : start + max(size, 1)])
                start += max(size, 1)
        sock.shutdown(socket.SHUT_WR)

    def receive() -> bytes:
        chunks = []
        while chunk := sock.recv(1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)

    sock.settimeout(30)
    if close_first:
        send()
        got["received"] = receive()
    else:  # sends in parallel with reading, so neither side waits on a full buffer
        sender = threading.Thread(target=send)
        sender.start()
        got["received"] = receive()
        sender.join(30)


# Sizes around the relay's own: its copy buffer (512 KiB), its pipe (1 MiB), a socket's buffer, and several times over.
_SIZES = st.one_of(
    st.integers(0, 4096),
    st.sampled_from([65535, 65536, (512 << 10) - 1, 512 << 10, (512 << 10) + 1, 1 << 20, (1 << 20) + 1, 3 << 20]),
    st.integers(0, 3 << 20),
)


@settings(max_examples=30, deadline=None)
@given(
    kind=st.sampled_from(["tcp", "unix"]),
    up=_SIZES,
    down=_SIZES,
    pieces=st.lists(st.integers(1, 1 << 20), max_size=4),
    a_sends_all_first=st.booleans(),
    limited=st.booleans(),
)
@example(kind="tcp", up=3 << 20, down=3 << 20, pieces=[], a_sends_all_first=False, limited=False)
@example(kind="tcp", up=(3 << 20) + 7, down=1, pieces=[1, 65536], a_sends_all_first=True, limited=True)
@example(kind="unix", up=3 << 20, down=(1 << 20) + 1, pieces=[512 << 10], a_sends_all_first=False, limited=True)
@example(kind="unix", up=0, down=3 << 20, pieces=[], a_sends_all_first=True, limited=False)
def test_the_relay_is_byte_exact_both_ways_and_counts_what_it_carried(
    kind: str, up: int, down: int, pieces: list[int], a_sends_all_first: bool, limited: bool
) -> None:
    payload_a, payload_b = os.urandom(up), os.urandom(down)
    event(f"{kind}, largest direction {'over' if max(up, down) > 1 << 20 else 'up to'} 1 MiB")
    a_got: dict[str, bytes] = {}
    b_got: dict[str, bytes] = {}

    async def main() -> Relay:
        client, a = _pair(kind)
        b, upstream = _pair(kind)
        for sock in (a, b):
            sock.setblocking(False)
        loop = asyncio.get_running_loop()
        limit = TokenBucket(400e6, 1 << 20, loop.time()) if limited else None
        relay = Relay(a, b, limit=limit).start()
        peers = asyncio.gather(
            asyncio.to_thread(_peer, client, payload_a, pieces, a_sends_all_first, a_got),
            asyncio.to_thread(_peer, upstream, payload_b, pieces[::-1], False, b_got),
        )
        try:
            await asyncio.wait_for(peers, 60)
            await asyncio.wait_for(relay.finished, 10)  # both sides closed: the relay ends by itself
        finally:
            client.close()
            upstream.close()
        return relay

    relay = asyncio.run(main())
    assert hashlib.sha256(b_got["received"]).digest() == hashlib.sha256(payload_a).digest()
    assert hashlib.sha256(a_got["received"]).digest() == hashlib.sha256(payload_b).digest()
    assert (relay.bytes_a_to_b, relay.bytes_b_to_a) == (up, down)
    assert relay.closed and relay.a.fileno() == -1 and relay.b.fileno() == -1
