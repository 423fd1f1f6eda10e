"""gVisor against bubblewrap and bare (issue 16), side by side in one run.

- create + exec `true` + destroy through the Python API, against plain `runsc do true` with the same network flag;
  the bubblewrap figure beside it.
- A new connection through each backend's proxy bridge (connect to 127.0.0.1:3128 inside, one byte each way, to a
  host Unix socket), timed inside the sandbox.
- A ready session (sandbox, proxies, clone through the gateway, branch) on gVisor against bubblewrap.
- A CPU-bound workload (a Python loop) and syscall-heavy ones (`git status` over 5,000 files, a Python test run)
  under each backend against the same command bare on the host.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import Figure, fresh_store
from bench.session_world import session_world
from ringfence.sandbox import Limits, SandboxSpec
from ringfence.sandbox.backends import open_backend
from ringfence.sandbox.spec import ProxyRoutes
from ringfence.sessions.manager import Environment

TOKEN = "bench-gvisor-token-0123"
LIMITS = Limits(pids=None, workspace_bytes=None)
CONNECT = """
import socket, time
took = []
for _ in range(N):
    start = time.perf_counter()
    s = socket.create_connection(("127.0.0.1", 3128))
    s.sendall(b"x"); s.recv(1); s.close()
    took.append(time.perf_counter() - start)
took.sort()
print(took[len(took) // 2] * 1000, took[int(len(took) * 0.99)] * 1000)
"""
CPU = "n = 0\nfor i in range(3_000_000):\n    n += i * i\nprint(n)"
# a Python test run: stdlib unittest (the sandbox's system Python has no pytest), 300 tests, each writing and reading
# back a JSON file in a temporary directory, so imports, file and directory calls dominate as in a project's suite
TESTS = """import json, os, tempfile, unittest


class Suite(unittest.TestCase):
    pass


def case(i):
    def test(self):
        with tempfile.TemporaryDirectory() as where:
            path = os.path.join(where, "case.json")
            with open(path, "w") as out:
                json.dump({"i": i, "xs": list(range(50))}, out)
            with open(path) as back:
                self.assertEqual(json.load(back)["i"], i)
    return test


for i in range(300):
    setattr(Suite, f"test_{i}", case(i))
"""


def _ms(samples: list[float], q: float = 0.5) -> float:
    return sorted(samples)[round(q * (len(samples) - 1))] * 1000


def run(rounds: int = 15) -> list[Figure]:
    base = Path(tempfile.mkdtemp(prefix="rf-bench-gvisor-"))
    base.chmod(0o711)
    try:
        figures = asyncio.run(_lifecycle(base, rounds))
        figures += asyncio.run(_bridge(base, 200 if rounds > 5 else 50))
        with fresh_store() as (store, _):
            figures += asyncio.run(_sessions(store, base, max(3, rounds // 3)))
        figures += asyncio.run(_workloads(base, max(3, rounds // 5)))
        return figures
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _backend(name: str, base: Path):  # type: ignore[no-untyped-def]
    return open_backend(name, base / f"sandboxes-{name}")


async def _lifecycle(base: Path, rounds: int) -> list[Figure]:
    samples: dict[str, list[float]] = {"gvisor": [], "bubblewrap": [], "runsc do": []}
    backends = {name: _backend(name, base) for name in ("gvisor", "bubblewrap")}
    for _ in range(rounds):
        for name, backend in backends.items():
            start = time.perf_counter()
            box = await backend.create(SandboxSpec(limits=LIMITS))
            await box.run(["true"])
            await box.destroy()
            samples[name].append(time.perf_counter() - start)
        start = time.perf_counter()
        done = await asyncio.create_subprocess_exec(
            "runsc", f"--root={base / 'do-state'}", "--network=none", "do", "true",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        await done.wait()
        samples["runsc do"].append(time.perf_counter() - start)
    ratio = _ms(samples["gvisor"]) / _ms(samples["runsc do"])
    return [Figure(
        "gVisor sandbox: create + exec `true` + destroy through the Python API vs `runsc do true`", ratio, "x",
        "<= 1.3", ratio <= 1.3,
        f"gVisor p50 {_ms(samples['gvisor']):.0f} ms (p99 {_ms(samples['gvisor'], 0.99):.0f}); runsc do p50 "
        f"{_ms(samples['runsc do']):.0f} ms (p99 {_ms(samples['runsc do'], 0.99):.0f}); bubblewrap p50 "
        f"{_ms(samples['bubblewrap']):.1f} ms (p99 {_ms(samples['bubblewrap'], 0.99):.1f}); {rounds} rounds "
        "interleaved. Ours starts a detached container whose init (a static C program) sets the process limit up in "
        "gVisor's cgroups and drops its capabilities, then runs `true` through `runsc exec` and the launcher (static "
        "C) that joins it to that limit, filters it, becomes the agent and ends its leftovers, and kills it: runsc do "
        "is one process start, with no limit, no filter and no mount but its root",
    )]  # fmt: skip


async def _bridge(base: Path, count: int) -> list[Figure]:
    path = base / "echo.sock"

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.read(1))
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(echo, str(path))
    os.chmod(path, 0o666)
    said = {}
    try:
        for name in ("bubblewrap", "gvisor"):
            box = await _backend(name, base).create(
                SandboxSpec(network="proxy", proxies=ProxyRoutes(path), limits=LIMITS)
            )
            try:
                done = await box.run(["python3", "-c", CONNECT.replace("N", str(count))], timeout=300)
                said[name] = [float(v) for v in done.stdout.split()]
            finally:
                await box.destroy()
    finally:
        server.close()
    (gp50, gp99), (bp50, bp99) = said["gvisor"], said["bubblewrap"]
    return [Figure(
        "a new connection through the proxy bridge (connect + 1 byte each way), gVisor's relay vs bubblewrap's", gp50,
        "ms", "report", True,
        f"gVisor p50 {gp50:.2f} / p99 {gp99:.2f} ms; bubblewrap p50 {bp50:.2f} / p99 {bp99:.2f} ms; {count} "
        "connections timed inside each sandbox. gVisor's relay is its init (C, poll) inside its own network stack; "
        "bubblewrap's is a listener the host makes in the sandbox's namespace",
    )]  # fmt: skip


async def _sessions(store, base: Path, rounds: int) -> list[Figure]:  # type: ignore[no-untyped-def]
    world = session_world(store, base, TOKEN)
    ready: dict[str, list[float]] = {"gvisor": [], "bubblewrap": []}
    managers = {
        name: world.manager(store, _backend(name, base), base / f"run-{name}", ceiling=Limits(pids=None))
        for name in ready
    }
    try:
        for _ in range(rounds):
            for name, manager in managers.items():
                start = time.perf_counter()
                live = await manager.start(world.caller, world.repository_id, Environment(network="none"))
                ready[name].append(time.perf_counter() - start)
                await manager.delete(live.id, actor=world.caller.user_id)
    finally:
        for manager in managers.values():
            await manager.shutdown()
        world.host.close()
    added = _ms(ready["gvisor"]) - _ms(ready["bubblewrap"])
    return [Figure(
        "a ready session (sandbox, proxies, clone through the gateway, branch) on gVisor vs bubblewrap (p50 added)",
        added, "ms", "<= 300 ms", added <= 300,
        f"gVisor p50 {_ms(ready['gvisor']):.0f} ms, bubblewrap p50 {_ms(ready['bubblewrap']):.0f} ms; {rounds} "
        "rounds interleaved; the start is the sandbox (its init, a static C program, relays), "
        "then two commands, the clone (system-call heavy: see git status below) and the branch, each a `runsc exec` "
        "and the launcher",
    )]  # fmt: skip


async def _workloads(base: Path, rounds: int) -> list[Figure]:
    tree = base / "tree"
    subprocess.run(["git", "init", "-q", str(tree)], check=True)
    for i in range(5000):
        (tree / f"d{i % 50}").mkdir(exist_ok=True)
        (tree / f"d{i % 50}" / f"f{i}.txt").write_text(f"{i}\n")
    (tree / "test_bench.py").write_text(TESTS)
    subprocess.run(["git", "-C", str(tree), "add", "-A"], check=True)
    subprocess.run(
        ["git", "-C", str(tree), "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "t"], check=True
    )
    work = {
        "cpu (a Python loop)": ["/usr/bin/python3", "-c", CPU],
        "git status, 5,000 files": ["git", "status", "--short"],
        "a Python test run (300 unittest cases, file I/O)": ["/usr/bin/python3", "-m", "unittest", "-q", "test_bench"],
    }
    times: dict[tuple[str, str], list[float]] = {}
    boxes = {}
    for name in ("bubblewrap", "gvisor"):
        boxes[name] = await _backend(name, base).create(SandboxSpec(limits=LIMITS))
    try:
        archive = subprocess.run(["tar", "-C", str(tree), "-cf", "-", "."], capture_output=True, check=True).stdout
        for box in boxes.values():
            await box.write_file("tree.tar", archive)
            await box.run(["sh", "-c", "mkdir -p tree && tar -C tree -xf tree.tar && rm tree.tar"], timeout=300)
        for _ in range(rounds):
            for what, argv in work.items():
                start = time.perf_counter()
                subprocess.run(argv, cwd=tree, capture_output=True, check=True)
                times.setdefault(("bare", what), []).append(time.perf_counter() - start)
                for name, box in boxes.items():
                    start = time.perf_counter()
                    await box.run(argv, cwd="tree", timeout=300)
                    times.setdefault((name, what), []).append(time.perf_counter() - start)
    finally:
        for box in boxes.values():
            await box.destroy()
    figures = []
    for what in work:
        bare = _ms(times[("bare", what)])
        ratios = {name: _ms(times[(name, what)]) / bare for name in boxes}
        figures.append(Figure(
            f"{what}: gVisor vs bare (bubblewrap beside it)", ratios["gvisor"], "x", "report", True,
            f"bare p50 {bare:.0f} ms; bubblewrap {ratios['bubblewrap']:.2f}x, gVisor {ratios['gvisor']:.2f}x "
            f"(ptrace platform: every system call is a round trip to gVisor's kernel); {rounds} rounds, the "
            "command's whole run including the sandbox's exec",
        ))  # fmt: skip
    return figures


if __name__ == "__main__":
    for figure in run(3):
        print(figure)
