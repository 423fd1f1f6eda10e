"""S-BOX B3: limits hold against bombs, and the host stays responsive."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from ringfence.sandbox import BubblewrapBackend, Limits, SandboxSpec
from ringfence.sandbox.cgroups import detect
from tests.sandbox.conftest import run


def host_responds() -> float:
    start = time.monotonic()
    subprocess.run(["true"], check=True, timeout=10)
    return time.monotonic() - start


def test_this_host_enforces_memory_pids_and_cpu() -> None:
    support = detect()
    assert support.complete, support.describe()  # the suite's bombs below rely on it


def test_b3_fork_bomb_is_contained(backend: BubblewrapBackend) -> None:
    async def go() -> tuple:
        sandbox = await backend.create(SandboxSpec(limits=Limits(pids=64)))
        try:
            bomb = await sandbox.run(["sh", "-c", "b() { b | b & }; b; sleep 2; echo survived"], timeout=20)
            after = await sandbox.run(["echo", "still works"])
            return bomb, after, sandbox.id
        finally:
            await sandbox.destroy()

    bomb, after, sandbox_id = run(go())
    assert b"fork" in bomb.stderr.lower() or bomb.code != 0
    assert after.stdout == b"still works\n"
    assert host_responds() < 2
    assert not Path(f"/sys/fs/cgroup/pids/ringfence/{sandbox_id}").exists()


def test_b3_memory_bomb_is_killed_not_the_host(backend: BubblewrapBackend) -> None:
    async def go() -> tuple:
        sandbox = await backend.create(SandboxSpec(limits=Limits(memory_bytes=64 * 2**20)))
        try:
            bomb = await sandbox.run(["/usr/bin/python3", "-c", "x = bytearray(400 * 2**20); print('allocated')"])
            small = await sandbox.run(["/usr/bin/python3", "-c", "x = bytearray(16 * 2**20); print('fine')"])
            return bomb, small
        finally:
            await sandbox.destroy()

    bomb, small = run(go())
    assert bomb.code == -9 or bomb.code == 137
    assert b"allocated" not in bomb.stdout
    assert small.stdout == b"fine\n"
    assert host_responds() < 2


def test_limits_apply_from_the_first_instruction(backend: BubblewrapBackend) -> None:
    async def go() -> bytes:
        sandbox = await backend.create(SandboxSpec())
        try:
            return (await sandbox.run(["cat", "/proc/self/cgroup"])).stdout
        finally:
            await sandbox.destroy()

    groups = run(go()).decode()
    for controller in ("pids", "memory", "cpu"):
        line = next(line for line in groups.splitlines() if f":{controller}:" in line or f",{controller}:" in line)
        assert "ringfence/sbx_" in line, groups
    assert os.geteuid() == 0


def test_b3_disk_fill_stops_at_the_workspace_size(backend: BubblewrapBackend) -> None:
    """The workspace is a 64 MiB image: filling it answers ENOSPC to the sandbox, the host's disk is untouched,
    and the sandbox goes on working once it frees space."""
    assert backend.workspace_limit_problem is None, backend.workspace_limit_problem
    limit = 64 * 2**20

    async def go() -> tuple:
        sandbox = await backend.create(SandboxSpec(limits=Limits(workspace_bytes=limit)))
        try:
            fill = await sandbox.run(["sh", "-c", "dd if=/dev/zero of=big bs=1M count=200 2>&1; sync; ls -l big"])
            image = backend.root / sandbox.id / "workspace.img"
            allocated = os.stat(image).st_blocks * 512
            again = await sandbox.run(["sh", "-c", "rm big && echo ok > small && cat small"])
            return fill, allocated, again
        finally:
            await sandbox.destroy()

    free_before = os.statvfs(backend.root).f_bavail
    fill, allocated, again = run(go())
    assert b"No space left on device" in fill.stdout
    assert allocated <= limit  # the image is sparse and never grows past its size
    assert again.stdout == b"ok\n"
    block = os.statvfs(backend.root).f_frsize
    assert abs(os.statvfs(backend.root).f_bavail - free_before) * block < 32 * 2**20  # and it was all given back
    assert host_responds() < 2
