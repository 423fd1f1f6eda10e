"""Bulk throughput through a sandbox's bridge (in-sandbox TCP -> the backend's relay -> host Unix socket) against a
direct loopback TCP copy between the same two programs, interleaved in one run: bubblewrap's (a splice relay on the
server's event loop), with its target, and gVisor's (the init's relay inside gVisor's own network stack), reported."""

from __future__ import annotations

import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import Figure
from ringfence.sandbox import SandboxSpec
from ringfence.sandbox.backends import open_backend
from ringfence.sandbox.spec import EGRESS_PORT, ProxyRoutes

# The sink reads until EOF and answers with the count; the client times connect .. answer. Both are separate
# processes in both runs, so the only difference is the path between them.
SINK = """
import socket, sys
family, address = (socket.AF_UNIX, sys.argv[1]) if sys.argv[1].startswith("/") else (socket.AF_INET, ("127.0.0.1", 0))
with socket.socket(family, socket.SOCK_STREAM) as server:
    server.bind(address)
    server.listen()
    print(server.getsockname()[1] if family == socket.AF_INET else "ready", flush=True)
    while True:
        conn, _ = server.accept()
        buffer, total = bytearray(1 << 20), 0
        while n := conn.recv_into(buffer):
            total += n
        conn.sendall(str(total).encode())
        conn.close()
"""
CLIENT = """
import socket, sys, time
port, mib = int(sys.argv[1]), int(sys.argv[2])
chunk = b"x" * (1 << 20)
start = time.perf_counter()
with socket.create_connection(("127.0.0.1", port)) as conn:
    for _ in range(mib):
        conn.sendall(chunk)
    conn.shutdown(socket.SHUT_WR)
    answer = conn.recv(64)
elapsed = time.perf_counter() - start
assert int(answer) == mib << 20, answer
print(elapsed)
"""


def run(mib: int, rounds: int) -> list[Figure]:
    bridged, direct = _medians("bubblewrap", mib, rounds)
    ratio = bridged / direct
    return [
        Figure(
            f"bridge throughput, {mib} MiB x {rounds} rounds: sandbox -> bridge -> host Unix socket, vs direct "
            "loopback TCP",
            ratio,
            "x direct",
            ">= 0.8",
            ratio >= 0.8,
            f"bridged median {bridged:,.0f} MiB/s, direct {direct:,.0f} MiB/s (splice relay on the server's event "
            "loop; client and sink are separate processes in both; the last hop is a Unix socket, itself faster "
            "than loopback TCP, so the ratio can pass 1)",
        )
    ]


def run_gvisor(mib: int, rounds: int) -> list[Figure]:
    bridged, direct = _medians("gvisor", mib, rounds)
    return [
        Figure(
            f"gVisor bridge throughput, {mib} MiB x {rounds} rounds: sandbox -> relay -> host Unix socket, vs "
            "direct loopback TCP",
            bridged / direct,
            "x direct",
            "report",
            True,
            f"bridged median {bridged:,.0f} MiB/s, direct {direct:,.0f} MiB/s (the init's relay, a poll loop "
            "inside gVisor's own network stack, under the ptrace platform: every read and write of the client and "
            "of the relay is a system call gVisor's kernel answers)",
        )
    ]


def _medians(backend_name: str, mib: int, rounds: int) -> tuple[float, float]:
    base = Path(tempfile.mkdtemp(prefix="rf-bench-bridge-"))
    base.chmod(0o711)
    try:
        return asyncio.run(_run(base, backend_name, mib, rounds))
    finally:
        shutil.rmtree(base, ignore_errors=True)


async def _run(base: Path, backend_name: str, mib: int, rounds: int) -> tuple[float, float]:
    """The medians, in MiB/s, of the bridged and the direct copies."""
    python = "/usr/bin/python3"  # the same interpreter inside the sandbox and outside
    unix_path = base / "egress.sock"
    tcp_sink = subprocess.Popen([python, "-c", SINK, "tcp"], stdout=subprocess.PIPE, text=True)
    unix_sink = subprocess.Popen([python, "-c", SINK, str(unix_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert tcp_sink.stdout is not None and unix_sink.stdout is not None
        tcp_port = int(tcp_sink.stdout.readline())
        unix_sink.stdout.readline()
        backend = open_backend(backend_name, base / "sandboxes")
        sandbox = await backend.create(SandboxSpec(network="proxy", proxies=ProxyRoutes(egress=unix_path)))
        direct, bridged = [], []
        try:
            for _ in range(rounds):
                done = await asyncio.to_thread(
                    subprocess.run, [python, "-c", CLIENT, str(tcp_port), str(mib)], capture_output=True, check=True
                )
                direct.append(mib / float(done.stdout))
                result = await sandbox.run([python, "-c", CLIENT, str(EGRESS_PORT), str(mib)])
                if result.code != 0:
                    raise RuntimeError(f"bridged client failed: {result.stderr.decode()[-500:]}")
                bridged.append(mib / float(result.stdout))
        finally:
            await sandbox.destroy()
    finally:
        for sink in (tcp_sink, unix_sink):
            sink.kill()
            sink.wait()
    return statistics.median(bridged), statistics.median(direct)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    for figure in run(int(sys.argv[1]) if len(sys.argv) > 1 else 1024, 5):
        print(figure)
