"""The init of a gVisor sandbox, run INSIDE it (stdlib only):
`python3 -I gvisor_init.py STATE_DIR CGROUPS PIDS MOST [PORT=SOCKET ...]`.

First, as the guest's root with the few capabilities it needs for this alone, it sets the sandbox's limits up in
gVisor's own cgroups (runsc 20221219 honours neither RLIMIT_NPROC nor a cgroup mount in the OCI spec, and a host
pids cgroup would count the Sentry's threads): gVisor's pids hierarchy at CGROUPS/pids with the sandbox's group
`box` limited to PIDS processes ("max": none), of which the agent's uid gets only `cgroup.procs` (to join it), and a
tracking hierarchy at CGROUPS/jobs where each command's launcher makes a group of its own. Then it drops every
capability for good (the bounding set first, under no_new_privs) and ignores SIGCHLD, so the orphans it inherits
are reaped. Written by hand: one Python start is cheaper under gVisor than the mount, mkdir, chown, chmod and
setpriv programs it replaces (each a program start of some 50 ms).

Then it relays (class Relay): gVisor has its own network stack, so the bubblewrap bridge (the host making a listener
inside the sandbox's network namespace) cannot work. Instead it listens on 127.0.0.1:PORT inside and carries each
connection to the session's Unix socket bound into the sandbox (runsc --host-uds=open lets it connect to those, the
only host sockets it can see), at most MOST connections per route at once (a flood of connects would cost the
host's proxies file descriptors: the ones past the bound are closed at once). With no routes it only waits. It
writes STATE_DIR/ready once it is set up and listens.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import selectors
    import socket

AGENT_UID = 1000
_PR_CAPBSET_DROP = 24
_CAPABILITY_V3 = 0x20080522


def setup(cgroups: str, pids: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)

    def mount(source: str, target: str, controller: str) -> None:
        if libc.mount(source.encode(), target.encode(), b"cgroup", 0, controller.encode()) != 0:
            raise OSError(ctypes.get_errno(), f"mount {controller} at {target}")

    mount("rf-pids", f"{cgroups}/pids", "pids")
    box = f"{cgroups}/pids/box"
    os.mkdir(box)
    if pids != "max":
        with open(f"{box}/pids.max", "w") as handle:
            handle.write(pids)
    os.chown(f"{box}/cgroup.procs", AGENT_UID, AGENT_UID)
    mount("rf-jobs", f"{cgroups}/jobs", "cpuacct")
    os.chmod(f"{cgroups}/jobs", 0o777)  # noqa: S103 (any uid makes its own group: the launcher runs as the agent)
    os.chmod(f"{cgroups}/jobs/cgroup.procs", 0o666)  # noqa: S103 (and moves itself back out to remove it)
    for cap in range(64):  # past the last capability the kernel knows, the drop answers EINVAL: nothing to drop
        libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)
    header, data = (ctypes.c_uint32 * 2)(_CAPABILITY_V3, 0), (ctypes.c_uint32 * 6)()
    if libc.capset(header, data) != 0:  # effective, permitted and inheritable: all empty
        raise OSError(ctypes.get_errno(), "capset")
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)


class _Half:
    """One direction of a relayed connection: bytes read from `source`, not yet written to `sink`."""

    def __init__(self, source: socket.socket, sink: socket.socket) -> None:
        self.source, self.sink, self.pending = source, sink, bytearray()
        self.ended = self.shut = False  # its source said EOF; its sink was half-closed after the last byte


class Relay:
    """Every route's listener and connection on one thread, with `selectors` (stdlib): importing asyncio costs
    some 0.3 s of start under gVisor, selectors and socket a third of that. At most `most` connections a route at
    once: the next is closed at once. A direction is read only while less than `HIGH` bytes of it wait to be
    written, and its sink is half-closed once its source ended and everything was written."""

    HIGH = 1 << 20

    def __init__(self, most: int) -> None:
        self.most, self.selector = most, selectors.DefaultSelector()
        self.held: dict[int, int] = {}  # a port: its connections open
        self.halves: dict[socket.socket, tuple[_Half, _Half]] = {}  # either end of a connection: its two halves
        self.port_of: dict[socket.socket, int] = {}

    def listen(self, port: int, path: str) -> None:
        server = socket.create_server(("127.0.0.1", port), backlog=512)
        server.setblocking(False)
        self.held[port] = 0
        self.selector.register(server, selectors.EVENT_READ, (port, path))

    def _accept(self, server: socket.socket, port: int, path: str) -> None:
        try:
            client, _ = server.accept()
        except OSError:
            return
        if self.held[port] >= self.most:
            client.close()
            return
        up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            up.setblocking(False)
            up.connect(path)  # a local socket: connected at once, or refused (absent, or its backlog full)
        except OSError:
            up.close()
            client.close()
            return
        client.setblocking(False)
        self.held[port] += 1
        pair = (_Half(client, up), _Half(up, client))
        for end in (client, up):
            self.halves[end], self.port_of[end] = pair, port
            self._watch(end)

    def _watch(self, end: socket.socket) -> None:
        """Read `end` while a half it feeds has room and has not ended; write it while bytes wait for it."""
        events = 0
        for half in self.halves[end]:
            if half.source is end and not half.ended and len(half.pending) < self.HIGH:
                events |= selectors.EVENT_READ
            if half.sink is end and half.pending:
                events |= selectors.EVENT_WRITE
        registered = self.selector.get_map().get(end)
        if events == 0:
            if registered is not None:
                self.selector.unregister(end)
        elif registered is None:
            self.selector.register(end, events, None)
        elif registered.events != events:
            self.selector.modify(end, events, None)

    def _close(self, pair: tuple[_Half, _Half]) -> None:
        ends = (pair[0].source, pair[0].sink)
        if ends[0] not in self.halves:
            return
        self.held[self.port_of[ends[0]]] -= 1
        for end in ends:
            if self.selector.get_map().get(end) is not None:
                self.selector.unregister(end)
            del self.halves[end], self.port_of[end]
            end.close()

    def _step(self, end: socket.socket, mask: int) -> None:
        pair = self.halves.get(end)
        if pair is None:
            return
        try:
            for half in pair:
                if half.source is end and mask & selectors.EVENT_READ and not half.ended:
                    chunk = end.recv(65536)
                    half.pending += chunk
                    half.ended = not chunk
                if half.pending:
                    try:  # noqa: SIM105 (contextlib's import is some 20 ms under gVisor)
                        del half.pending[: half.sink.send(half.pending)]
                    except BlockingIOError:
                        pass
                if half.ended and not half.pending and not half.shut:
                    half.sink.shutdown(socket.SHUT_WR)
                    half.shut = True
        except OSError:  # reset, or a peer gone: the whole connection ends
            self._close(pair)
            return
        if pair[0].shut and pair[1].shut:
            self._close(pair)
            return
        for side in (pair[0].source, pair[0].sink):
            self._watch(side)

    def run(self) -> None:
        while True:
            for key, mask in self.selector.select():
                if key.data is not None:
                    self._accept(key.fileobj, *key.data)  # type: ignore[arg-type]
                else:
                    self._step(key.fileobj, mask)  # type: ignore[arg-type]


def ready(state: str) -> None:
    with open(os.path.join(state, "ready"), "w") as handle:
        handle.write("ready\n")


if __name__ == "__main__":
    setup(sys.argv[2], sys.argv[3])
    routes = [route.split("=", 1) for route in sys.argv[5:]]
    if routes:
        import selectors  # only to relay
        import socket

        relay = Relay(int(sys.argv[4]))
        for port, path in routes:
            relay.listen(int(port), path)
        ready(sys.argv[1])
        relay.run()
    ready(sys.argv[1])
    while True:
        signal.pause()
