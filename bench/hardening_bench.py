"""What the hardening of issue 14 costs, measured against the code before it in the same run.

- Sandbox create + exec `true` + destroy: this tree against the tree at BEFORE (a git worktree), each in its own
  worker process, rounds interleaved one by one so both see the same noise. The hardening added a longer seccomp
  program (socket families, personality, io_uring...), a host-wide uid claim (a lock file) and a memfd of options.
- An unauthenticated 300 MiB body sent to a real `ringfence serve`: how much the client had sent when the answer
  came, and how much the server's resident memory grew.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from bench.common import Figure

BEFORE = "07d3bda"  # main before issue 14
ROOT = Path(__file__).resolve().parent.parent

WORKER = textwrap.dedent("""
    import asyncio, sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from ringfence.sandbox import BubblewrapBackend, Limits, SandboxSpec

    async def main():
        backend = BubblewrapBackend(Path(sys.argv[2]))
        spec = SandboxSpec(limits=Limits(workspace_bytes=None))
        for line in sys.stdin:
            start = time.perf_counter()
            sandbox = await backend.create(spec)
            await sandbox.run(["true"])
            await sandbox.destroy()
            print(time.perf_counter() - start, flush=True)

    asyncio.run(main())
""")


def _pct(samples: list[float], q: float) -> float:
    return sorted(samples)[round(q * (len(samples) - 1))] * 1000


def sandbox_cost(rounds: int) -> list[Figure]:
    base = Path(tempfile.mkdtemp(prefix="rf-bench-hard-"))
    base.chmod(0o711)
    before_tree = base / "before"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(before_tree), BEFORE], check=True)
    workers = {}
    try:
        for name, src in (("after", ROOT / "src"), ("before", before_tree / "src")):
            workers[name] = subprocess.Popen(
                [sys.executable, "-c", WORKER, str(src), str(base / f"sandboxes-{name}")],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        times: dict[str, list[float]] = {"after": [], "before": []}
        for i in range(rounds + 10):
            for name in ("before", "after") if i % 2 else ("after", "before"):  # alternate who goes first
                worker = workers[name]
                assert worker.stdin is not None and worker.stdout is not None
                worker.stdin.write("go\n")
                worker.stdin.flush()
                elapsed = float(worker.stdout.readline())
                if i >= 10:  # the first ten warm both up
                    times[name].append(elapsed)
    finally:
        for worker in workers.values():
            if worker.stdin is not None:
                worker.stdin.close()
            worker.wait(30)
            if worker.stdout is not None:
                worker.stdout.close()
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before_tree)], check=False)
        shutil.rmtree(base, ignore_errors=True)
    ratio = statistics.median(times["after"]) / statistics.median(times["before"])
    return [
        Figure(
            f"sandbox create + exec `true` + destroy after the hardening vs before it ({BEFORE}), {rounds} rounds "
            "interleaved in one run",
            ratio,
            "x before",
            "<= 1.05",
            ratio <= 1.05,
            f"after p50 {_pct(times['after'], 0.5):.2f} ms, p99 {_pct(times['after'], 0.99):.2f} ms; before p50 "
            f"{_pct(times['before'], 0.5):.2f} ms, p99 {_pct(times['before'], 0.99):.2f} ms",
        )
    ]


def _rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))) * 1024


def unauthenticated_body() -> list[Figure]:
    data = Path(tempfile.mkdtemp(prefix="rf-bench-body-"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGFENCE_")}
    env.update(RINGFENCE_DATA_DIR=str(data), RINGFENCE_DEMO="false", RINGFENCE_SANDBOX_DIR=str(data / "s"))
    server = subprocess.Popen(
        [sys.executable, "-m", "ringfence", "serve", "--listen", f"127.0.0.1:{port}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.1)
        time.sleep(1)
        before = _rss(server.pid)
        chunk = 64 * 1024
        sent = 0
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, chunk)
            sock.sendall(b"POST /v1/users HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            piece = f"{chunk:x}\r\n".encode() + b"x" * chunk + b"\r\n"
            answer = b""
            while sent < 300 * 2**20:
                if select.select([sock], [], [], 0.05)[0]:
                    answer = sock.recv(4096)
                    break
                try:
                    sock.sendall(piece)
                except OSError:
                    break
                sent += chunk
        growth = (_rss(server.pid) - before) / 2**20
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(data, ignore_errors=True)
    status = answer.split(b"\r\n", 1)[0].decode(errors="replace")
    return [
        Figure(
            "an unauthenticated 300 MiB chunked POST to a real `ringfence serve`: body sent before the answer",
            sent / 2**20,
            "MiB",
            "< 1",
            sent < 2**20 and status.startswith("HTTP/1.1 401"),
            f"answer: {status}; the server's resident memory grew by {growth:.1f} MiB (target < 16)",
        ),
        Figure(
            "the same: the server's resident memory growth",
            growth,
            "MiB",
            "< 16",
            growth < 16,
            "before the fix the body was read whole: 118 MiB -> 1.27 GiB",
        ),
    ]


def run(rounds: int) -> list[Figure]:
    return [*sandbox_cost(rounds), *unauthenticated_body()]
