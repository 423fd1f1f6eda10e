"""Finding and ending a sandbox's processes on the host.

Zombies are never counted: a killed process keeps its /proc entry (and its place in its cgroup's list) until its
parent reaps it, but it runs nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterable

from ringfence.sandbox.spec import SandboxError


def process_identity(pid: int) -> str | None:
    """`pid` with its start time (a pid alone may have been reused since)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return f"{pid} {handle.read().rsplit(b')', 1)[1].split()[19].decode()}"
    except (OSError, IndexError):
        return None


def me() -> str:
    """This process's identity: what a backend writes beside the sandboxes it makes (their owner)."""
    identity = process_identity(os.getpid())
    assert identity is not None
    return identity


def alive(owner: str) -> bool:
    """Whether the process an owner mark names still runs (the same pid, started at the same time)."""
    pid = owner.split(" ", 1)[0]
    return pid.isdigit() and process_identity(int(pid)) == owner


def live(pids: Iterable[int]) -> list[int]:
    alive = []
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/stat", "rb") as handle:
            if handle.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X"):
                alive.append(pid)
    return alive


def processes_of(uid: int) -> list[int]:
    """Live processes of `uid`, by a scan of /proc."""
    owned = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.stat(entry.path).st_uid == uid:
                    owned.append(int(entry.name))
    return live(owned)


def kill_listed(listing: Callable[[], list[int] | None], within: float = 5.0) -> None:
    """SIGKILL the processes `listing` names (a sandbox's own cgroup) until none is left; nothing if it cannot
    list them."""
    deadline = time.monotonic() + within
    while (listed := listing()) and (pids := live(listed)):
        if time.monotonic() > deadline:
            raise SandboxError(f"{len(pids)} process(es) of a sandbox survived SIGKILL for {within} s")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.001)


def kill_uid(uid: int, within: float = 5.0, listing: Callable[[], list[int] | None] | None = None) -> None:
    """SIGKILL every process of `uid` until none is left (a fork racing one pass is caught by the next; a killed
    process may take milliseconds to die while its pid namespace is torn down). `listing`, when it can, names
    them faster than a scan of /proc (the sandbox's own pids group)."""
    deadline = time.monotonic() + within
    pause = 0.0005
    while True:
        listed = listing() if listing is not None else None
        pids = live(listed) if listed is not None else processes_of(uid)
        if not pids:
            return
        if time.monotonic() > deadline:
            raise SandboxError(f"{len(pids)} process(es) of sandbox uid {uid} survived SIGKILL for {within} s")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
