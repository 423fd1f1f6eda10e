"""Host uids for sandboxes, claimed on the host so that no two ringfence processes ever share one (S-BOX B9).

Owns: the claim of one uid of the sandbox range: an exclusive `flock` on `<claims>/<uid>.lock`, held by an open
descriptor for as long as the sandbox lives. The kernel releases it when the descriptor is closed (destroy) or when
its process dies (a crash), so a claim never outlives its holder and never needs cleaning by hand. A holder marks
its lock file while it holds it and clears the mark when it releases cleanly (after destroy killed everything);
a marked file found free means its holder died, so its uid's leftover processes are swept before the uid is
handed out (the free claim proves that no live ringfence process owns them). The common case scans nothing.
Lock files are never removed (removing one while another process opens it would let two claim the same uid);
there is at most one small file per uid.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Collection
from pathlib import Path

from ringfence.sandbox.procs import kill_uid, processes_of
from ringfence.sandbox.spec import SandboxError

UID_BASE = 160_000  # host uids of sandboxes: UID_BASE .. UID_BASE + UID_POOL - 1 (no /etc/passwd entry needed)
UID_POOL = 30_000
CLAIMS = Path("/run/ringfence/uids")  # memory-backed: claims do not survive a reboot, nor do the processes


class UidClaim:
    """One claimed uid; `release` (idempotent) gives it back."""

    def __init__(self, uid: int, fd: int) -> None:
        self.uid, self._fd = uid, fd

    def release(self) -> None:
        """Give the uid back; the caller has ended every process of it (destroy)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)  # a clean release: the next holder need not sweep
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None  # type: ignore[assignment]


def in_pool(uid: int) -> bool:
    return UID_BASE <= uid < UID_BASE + UID_POOL


def claim(skip: Collection[int] = (), directory: Path = CLAIMS) -> UidClaim:
    """The lowest uid of the pool that no process on this host has claimed (and not in `skip`)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for uid in range(UID_BASE, UID_BASE + UID_POOL):
        if uid in skip:
            continue
        fd = os.open(directory / f"{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        except BaseException:
            os.close(fd)
            raise
        try:
            if os.fstat(fd).st_size and processes_of(uid):  # a holder died holding it: end what it left
                kill_uid(uid)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)  # held (cleared at a clean release)
        except BaseException:
            os.close(fd)
            raise
        return UidClaim(uid, fd)
    raise SandboxError(f"all {UID_POOL} sandbox uids are in use on this host")


def claimed_elsewhere(uid: int, directory: Path = CLAIMS) -> bool:
    """Whether a live process holds `uid`'s claim (reconcile leaves that process's sandbox alone)."""
    try:
        fd = os.open(directory / f"{uid}.lock", os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock this probe took
    return False
