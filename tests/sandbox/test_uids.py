"""S-BOX B9: two ringfence processes on one host never give two sandboxes the same host uid (destroy kills by uid,
so a shared uid would let one process kill, or be, the other's sandbox). A uid is claimed on the host, held while
its sandbox lives, released on destroy, and recovered when its holder dies."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ringfence.sandbox import BubblewrapBackend, SandboxSpec
from ringfence.sandbox.procs import processes_of
from tests.sandbox.conftest import run

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="sandboxes get their own host uids only as root")

HOLDER = textwrap.dedent("""
    import asyncio, os, sys
    from pathlib import Path
    from ringfence.sandbox import BubblewrapBackend, SandboxSpec
    async def main():
        backend = BubblewrapBackend(Path(sys.argv[1]))
        sandbox = await backend.create(SandboxSpec())
        uid = os.stat(backend.root / sandbox.id / "workspace").st_uid
        # the uid is said once the sleeping command runs: a holder killed while it still starts bwrap (before bwrap
        # sets its parent-death signal) would leave an orphan that no crash of a running holder leaves
        async for _ in sandbox.exec(["sh", "-c", "echo running; exec sleep 1000"], timeout=None):
            print(uid, flush=True)
    asyncio.run(main())
""")


def _holder(root: Path) -> tuple[subprocess.Popen[str], int]:
    """Another ringfence process on this host, holding one sandbox with a sleeping command."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(root)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip().isdigit(), "the other process made no sandbox"
    return proc, int(line)


def _uid_of(backend: BubblewrapBackend, sandbox_id: str) -> int:
    return os.stat(backend.root / sandbox_id / "workspace").st_uid


def test_b9_another_process_never_gets_a_uid_in_use_and_destroy_never_touches_its_sandbox(sandbox_root: Path) -> None:
    other_root = sandbox_root.parent / "other"
    other, their_uid = _holder(other_root)
    try:
        backend = BubblewrapBackend(sandbox_root)

        async def go() -> list[int]:
            made = [await backend.create(SandboxSpec()) for _ in range(3)]
            uids = [_uid_of(backend, s.id) for s in made]
            for sandbox in made:
                await sandbox.destroy()
            return uids

        mine = run(go())
        assert their_uid not in mine and len(set(mine)) == 3
        assert processes_of(their_uid), "destroying our sandboxes killed the other process's sandbox"
        assert other.poll() is None
    finally:
        other.kill()
        other.wait(10)
        assert other.stdout is not None
        other.stdout.close()


def test_b9_a_claim_is_released_on_destroy_and_recovered_after_its_holder_dies(sandbox_root: Path) -> None:
    backend = BubblewrapBackend(sandbox_root)

    async def one() -> int:
        sandbox = await backend.create(SandboxSpec())
        uid = _uid_of(backend, sandbox.id)
        await sandbox.destroy()
        return uid

    first = run(one())
    assert run(one()) == first  # released on destroy: the lowest free uid again
    other_root = sandbox_root.parent / "other"
    other, their_uid = _holder(other_root)
    other.send_signal(signal.SIGKILL)  # a crash: no destroy, no release
    other.wait(10)
    assert other.stdout is not None
    other.stdout.close()
    deadline = time.monotonic() + 10
    while processes_of(their_uid) and time.monotonic() < deadline:  # --die-with-parent ends its sandbox
        time.sleep(0.05)

    async def many() -> list[int]:
        made = [await backend.create(SandboxSpec()) for _ in range(3)]
        uids = [_uid_of(backend, s.id) for s in made]
        for sandbox in made:
            await sandbox.destroy()
        return uids

    assert their_uid in run(many())  # the dead holder's claim is free again
    deadline = time.monotonic() + 5  # a killed process takes a moment to leave; one that stays is a failure
    while (left := processes_of(their_uid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, [Path(f"/proc/{p}/cmdline").read_bytes() for p in left]


def test_b9_two_backends_in_one_process_never_share_a_uid(sandbox_root: Path) -> None:
    second_root = sandbox_root.parent / "second"
    a, b = BubblewrapBackend(sandbox_root), BubblewrapBackend(second_root)

    async def go() -> tuple[list[int], list[int]]:
        made_a = [await a.create(SandboxSpec()) for _ in range(2)]
        made_b = [await b.create(SandboxSpec()) for _ in range(2)]
        uids = [_uid_of(a, s.id) for s in made_a], [_uid_of(b, s.id) for s in made_b]
        await asyncio.gather(*(s.destroy() for s in (*made_a, *made_b)))
        return uids

    in_a, in_b = run(go())
    assert not set(in_a) & set(in_b)
