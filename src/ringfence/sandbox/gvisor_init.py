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

Then it relays: gVisor has its own network stack, so the bubblewrap bridge (the host making a listener inside the
sandbox's network namespace) cannot work. Instead it listens on 127.0.0.1:PORT inside and carries each connection
to the session's Unix socket bound into the sandbox (runsc --host-uds=open lets it connect to those, the only host
sockets it can see), at most MOST connections per route at once (a flood of connects would cost the host's proxies
file descriptors: the ones past the bound are closed at once). With no routes it only waits. It writes
STATE_DIR/ready once it is set up and listens.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

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


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


def _route(path: str, most: int):  # type: ignore[no-untyped-def]
    held = 0

    async def serve(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        nonlocal held
        if held >= most:
            client_writer.close()
            return
        held += 1
        try:
            try:
                up_reader, up_writer = await asyncio.open_unix_connection(path)
            except OSError:
                client_writer.close()
                return
            await asyncio.gather(_pipe(client_reader, up_writer), _pipe(up_reader, client_writer))
            client_writer.close()
            up_writer.close()
        finally:
            held -= 1

    return serve


async def main(state: str, most: int, routes: list[str]) -> None:
    for route in routes:
        port, path = route.split("=", 1)
        await asyncio.start_server(_route(path, most), "127.0.0.1", int(port))
    ready(state)
    await asyncio.Event().wait()


def ready(state: str) -> None:
    with open(os.path.join(state, "ready"), "w") as handle:
        handle.write("ready\n")


if __name__ == "__main__":
    setup(sys.argv[2], sys.argv[3])
    if sys.argv[5:]:
        import asyncio  # only to relay: its import is a third of this program's start under gVisor

        asyncio.run(main(sys.argv[1], int(sys.argv[4]), sys.argv[5:]))
    ready(sys.argv[1])
    while True:
        signal.pause()
