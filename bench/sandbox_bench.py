"""Sandbox start cost against plain bubblewrap, and host-side memory of 200 idle sandboxes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import Figure
from ringfence.sandbox import BubblewrapBackend, Limits, SandboxSpec
from ringfence.sandbox.mounts import MountPlan, bwrap_argv
from ringfence.sandbox.seccomp_filter import program_fd


def _pct(samples: list[float], q: float) -> float:
    return sorted(samples)[round(q * (len(samples) - 1))] * 1000


def _private_kib(pid: int) -> int:
    """Private (not shared) memory of a process: what it costs beyond the shared libraries."""
    total = 0
    with open(f"/proc/{pid}/smaps_rollup") as handle:
        for line in handle:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total


def run(rounds: int, idle: int) -> list[Figure]:
    base = Path(tempfile.mkdtemp(prefix="rf-bench-sbx-"))
    base.chmod(0o711)
    try:
        return asyncio.run(_run(base, rounds, idle))
    finally:
        shutil.rmtree(base, ignore_errors=True)


async def _run(base: Path, rounds: int, idle: int) -> list[Figure]:
    backend = BubblewrapBackend(base / "sandboxes")
    plain_ws = base / "plain"
    plain_ws.mkdir()

    async def ours(limits: Limits) -> None:
        sandbox = await backend.create(SandboxSpec(limits=limits))
        await sandbox.run(["true"])
        await sandbox.destroy()

    no_image, default = Limits(workspace_bytes=None), Limits()

    def plain() -> None:
        fd = program_fd()
        try:
            argv = bwrap_argv(backend.bwrap, MountPlan(plain_ws, {}, "plain", seccomp_fd=fd), ["true"])
            subprocess.run(argv, check=True, pass_fds=(fd,))
        finally:
            os.close(fd)

    for _ in range(5):
        await ours(no_image)
        await ours(default)
        plain()
    mine, imaged, theirs = [], [], []
    for _ in range(rounds):  # interleaved, so all see the same noise
        start = time.perf_counter()
        await ours(no_image)
        mine.append(time.perf_counter() - start)
        start = time.perf_counter()
        await ours(default)
        imaged.append(time.perf_counter() - start)
        start = time.perf_counter()
        plain()
        theirs.append(time.perf_counter() - start)
    ratio = statistics.median(mine) / statistics.median(theirs)
    imaged_ratio = statistics.median(imaged) / statistics.median(theirs)

    before = _private_kib(os.getpid())
    sandboxes = [await backend.create(SandboxSpec()) for _ in range(idle)]
    streams = [s.exec(["sleep", "600"], timeout=None) for s in sandboxes]

    async def first(stream: object) -> object:
        return await anext(stream)  # type: ignore[call-overload]

    tasks = [asyncio.create_task(first(stream)) for stream in streams]
    deadline = time.monotonic() + 60
    while sum(len(s._procs) for s in sandboxes) < idle and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    monitors = [p.pid for s in sandboxes for p in s._procs]
    host_kib = _private_kib(os.getpid()) - before + sum(_private_kib(pid) for pid in monitors)
    for sandbox in sandboxes:
        await sandbox.destroy()
    for task in tasks:
        task.cancel()
    per_sandbox = host_kib / idle / 1024
    return [
        Figure(
            f"sandbox create + exec `true` + destroy ({rounds} rounds), vs plain bwrap with the same flags "
            "(workspace size limit off: a plain directory, as plain bwrap gets)",
            ratio,
            "x plain",
            "<= 2.0",
            ratio <= 2.0,
            f"ours p50 {_pct(mine, 0.5):.1f} ms, p99 {_pct(mine, 0.99):.1f} ms; plain bwrap p50 "
            f"{_pct(theirs, 0.5):.1f} ms, p99 {_pct(theirs, 0.99):.1f} ms",
        ),
        Figure(
            "the same with the default limits: a 10 GiB loop-mounted workspace image (B3 disk fill), vs plain bwrap",
            imaged_ratio,
            "x plain",
            "report (the image is extra work plain bwrap does not do)",
            True,
            f"p50 {_pct(imaged, 0.5):.1f} ms, p99 {_pct(imaged, 0.99):.1f} ms: the image adds "
            f"{(statistics.median(imaged) - statistics.median(mine)) * 1000:.1f} ms (copy 228 KiB of metadata, "
            "attach a loop device, mount; unmount and delete at destroy)",
        ),
        Figure(
            f"{idle} concurrent idle sandboxes: host-side memory per sandbox",
            per_sandbox,
            "MiB",
            "<= 2 MiB",
            per_sandbox <= 2.0,
            f"{len(monitors)} bwrap monitors + this process's bookkeeping, private memory only "
            "(the sandboxes' own processes are the payload)",
        ),
    ]


VICTIM = "import time; t = time.perf_counter(); sum(range(20_000_000)); print(time.perf_counter() - t)"
HOG = "import os\nfor _ in range(3): os.fork()\nwhile True: pass\n"  # 8 busy processes


def fairness(rounds: int) -> list[Figure]:
    """A sandbox running 8 busy processes next to one running a single CPU task: the task keeps its share."""
    base = Path(tempfile.mkdtemp(prefix="rf-bench-cpu-"))
    base.chmod(0o711)
    try:
        return asyncio.run(_fairness(base, rounds))
    finally:
        shutil.rmtree(base, ignore_errors=True)


async def _fairness(base: Path, rounds: int) -> list[Figure]:
    backend = BubblewrapBackend(base / "sandboxes")
    victim = await backend.create(SandboxSpec())
    hog = await backend.create(SandboxSpec())
    try:

        async def task() -> float:
            done = await victim.run(["/usr/bin/python3", "-c", VICTIM])
            return float(done.stdout)

        alone = [await task() for _ in range(rounds)]
        stream = hog.exec(["/usr/bin/python3", "-c", HOG], timeout=None)
        hogging = asyncio.create_task(anext(stream))  # type: ignore[arg-type]
        await asyncio.sleep(1.0)  # the hog is at full speed
        contended = [await task() for _ in range(rounds)]
        hogging.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await hogging
        await stream.aclose()
    finally:
        await victim.destroy()
        await hog.destroy()
    ratio = statistics.median(contended) / statistics.median(alone)
    return [
        Figure(
            "CPU hog (8 busy processes) in one sandbox: a single CPU task in another, time vs alone",
            ratio,
            "x alone",
            "<= 1.5",
            ratio <= 1.5,
            f"median {statistics.median(contended) * 1000:.0f} ms beside the hog, {statistics.median(alone) * 1000:.0f}"
            f" ms alone, {rounds} rounds each; by process count alone it would get 2/9 of the 2 cores (2.25x)",
        )
    ]
