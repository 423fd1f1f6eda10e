"""The credential gateway against going straight to the same git host, side by side: clone and push times, the
gateway's peak memory while a large repository streams through it, and the model route's added time to first
byte. The host is `git http-backend` behind the same small server the tests use (tests/gateway/git_host.py)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.common import Figure

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.gateway.git_host import GitHost, git

TOKEN = "bench-token-0123456789"


def _fast_import(bare: Path, commits: int, files_per_commit: int, file_bytes: int) -> None:
    """A repository written by git fast-import: `commits` commits, each adding `files_per_commit` files of
    incompressible bytes (so the pack is as large as the content)."""
    proc = subprocess.Popen(
        ["git", "fast-import", "--quiet"], cwd=bare, stdin=subprocess.PIPE, env={**os.environ, "GIT_DIR": str(bare)}
    )
    assert proc.stdin is not None
    out = proc.stdin
    n = 0
    for c in range(commits):
        message = f"commit {c}".encode()
        out.write(b"commit refs/heads/main\n")
        out.write(f"committer Bench <b@example.com> {1700000000 + c} +0000\n".encode())
        out.write(b"data %d\n%s\n" % (len(message), message))
        for _ in range(files_per_commit):
            data = os.urandom(file_bytes)
            out.write(f"M 644 inline dir{n // 500}/file{n}.bin\ndata {len(data)}\n".encode() + data + b"\n")
            n += 1
    out.close()
    if proc.wait() != 0:
        raise RuntimeError("git fast-import failed")


def _repository(root: Path, name: str, commits: int, files_per_commit: int, file_bytes: int) -> Path:
    bare = root / "acme" / f"{name}.git"
    bare.mkdir(parents=True)
    git("init", "-q", "--bare", "-b", "main", str(bare))
    _fast_import(bare, commits, files_per_commit, file_bytes)
    git("config", "http.receivepack", "true", cwd=bare)
    git("repack", "-a", "-d", "-q", cwd=bare)
    return bare


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _gateway(base: Path, upstream: str, repo: str) -> tuple[subprocess.Popen[str], int]:
    token = base / f"token-{repo}"
    token.write_text(TOKEN)
    token.chmod(0o600)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ringfence", "gateway", "serve", "--listen", f"127.0.0.1:{port}", "--upstream",
         upstream, "--repo", f"acme/{repo}", "--branch", "ringfence/bench", "--token-file", str(token)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    proc.stdout.readline()
    return proc, port


def _timed_clone(url: str, into: Path, extra: list[str]) -> float:
    shutil.rmtree(into, ignore_errors=True)
    start = time.perf_counter()
    done = git(*extra, "clone", "-q", "--bare", url, str(into))
    if done.returncode != 0:
        raise RuntimeError(f"clone failed: {done.stderr[-300:]}")
    return time.perf_counter() - start


def _peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def run(rounds: int = 3, big_mib: int = 500) -> list[Figure]:
    base = Path(tempfile.mkdtemp(prefix="rf-bench-gateway-"))
    try:
        return _run(base, rounds, big_mib)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _run(base: Path, rounds: int, big_mib: int) -> list[Figure]:
    root = base / "host"
    _repository(root, "widgets", 1000, 5, 10_000)  # 5,000 files, ~50 MB, 1,000 commits
    _repository(root, "large", max(big_mib // 50, 1), 50, 1 << 20)  # ~big_mib MiB in 1 MiB files
    host = GitHost(root, TOKEN)
    auth = ["-c", f"http.extraHeader=Authorization: {host.expected()}"]  # straight to the host, with the token
    gateway, port = _gateway(base, host.url, "widgets")
    big_gateway, big_port = _gateway(base, host.url, "large")
    try:
        direct_url = f"{host.url}/acme/widgets.git"
        via_url = f"http://127.0.0.1:{port}/git/acme/widgets.git"
        direct, via = [], []
        for _ in range(rounds):
            direct.append(_timed_clone(direct_url, base / "d", auth))
            via.append(_timed_clone(via_url, base / "g", []))
        clone_ratio = statistics.median(via) / statistics.median(direct)
        push_direct, push_via = _pushes(base, direct_url, via_url, auth, rounds)
        push_ratio = statistics.median(push_via) / statistics.median(push_direct)
        before = _peak_kib(big_gateway.pid)
        _timed_clone(f"http://127.0.0.1:{big_port}/git/acme/large.git", base / "big", [])
        peak_mib = _peak_kib(big_gateway.pid) / 1024
        big_bytes = sum(p.stat().st_size for p in (base / "big" / "objects" / "pack").glob("*.pack"))
        first_byte = _first_byte(base)
    finally:
        for proc in (gateway, big_gateway):
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
        host.close()
    return [
        Figure(
            "gateway: clone of 5,000 files / ~50 MB / 1,000 commits, through the gateway vs straight to the host",
            clone_ratio,
            "x direct",
            "<= 1.15",
            clone_ratio <= 1.15,
            f"median {statistics.median(via):.2f} s vs {statistics.median(direct):.2f} s, {rounds} rounds each",
        ),
        Figure(
            "gateway: push of 100 new commits, through the gateway (push-head check included) vs straight",
            push_ratio,
            "x direct",
            "<= 1.15",
            push_ratio <= 1.15,
            f"median {statistics.median(push_via):.2f} s vs {statistics.median(push_direct):.2f} s",
        ),
        Figure(
            f"gateway peak memory while a {big_bytes / 2**20:,.0f} MiB pack streams through it (clone)",
            peak_mib,
            "MiB",
            "<= 64 MiB",
            peak_mib <= 64,
            f"VmHWM of the `gateway serve` process (it was {before / 1024:.0f} MiB before the clone)",
        ),
        Figure(
            "gateway model route: added time to the first byte of a streamed answer, p50",
            first_byte[0],
            "ms",
            "<= 2 ms",
            first_byte[0] <= 2.0,
            f"p99 {first_byte[1]:.2f} ms; {first_byte[2]} requests, local provider stand-in, gateway vs direct",
        ),
    ]


def _pushes(base: Path, direct_url: str, via_url: str, auth: list[str], rounds: int) -> tuple[list[float], list[float]]:
    """Push 100 new small commits to the session branch, alternately straight and through the gateway."""
    work = base / "push-work"
    shutil.rmtree(work, ignore_errors=True)
    assert git("clone", "-q", via_url, str(work)).returncode == 0
    git("checkout", "-q", "-b", "ringfence/bench", cwd=work)
    timings: dict[str, list[float]] = {"direct": [], "via": []}
    for r in range(rounds):
        for kind, url, extra in (("direct", direct_url, auth), ("via", via_url, [])):
            for i in range(100):
                (work / f"push-{kind}-{r}-{i}.txt").write_text(f"{kind} {r} {i}\n")
                git("add", ".", cwd=work)
                git("commit", "-q", "-m", f"{kind} {r} {i}", cwd=work)
            start = time.perf_counter()
            done = git(*extra, "push", "-q", url, "HEAD:refs/heads/ringfence/bench", cwd=work)
            timings[kind].append(time.perf_counter() - start)
            if done.returncode != 0:
                raise RuntimeError(f"push failed: {done.stderr[-300:]}")
    return timings["direct"], timings["via"]


def _first_byte(base: Path) -> tuple[float, float, int]:
    """Time to the first byte of an event stream: through the gateway's model route vs straight to a local
    stand-in provider (which answers at once)."""

    class Provider(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = b'event: message_start\ndata: {"type":"message_start"}\n\n'
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            # The client measures the first byte and may hang up before the rest: expected.
            with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Provider)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    provider_port = server.server_address[1]
    script = f"""
import asyncio, sys
from ringfence.gateway.git_proxy import Credential, Gateway, GitSession, ModelUpstream
from ringfence.gateway.routes import Repository
from ringfence.store.crypto import Secret
from tests.gateway.git_host import loopback_dialer
async def main():
    g = Gateway(dialer=loopback_dialer())
    g.add_session(GitSession("s", Repository.parse("a/b"), "x", "http://127.0.0.1:9", Credential("basic", Secret("t"))),
                  (ModelUpstream("anthropic", "http://127.0.0.1:{provider_port}", Secret("sk-key")),))
    print((await g.listen_tcp("s", "127.0.0.1", 0))[1], flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        gateway_port = int(proc.stdout.readline())
        body = b'{"stream":true}'

        def once(port: int, path: str) -> float:
            start = time.perf_counter()
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(
                    f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                    + body
                )
                sock.recv(1)
            return time.perf_counter() - start

        direct, via = [], []
        n = 300
        for _ in range(n):
            direct.append(once(provider_port, "/v1/messages"))
            via.append(once(gateway_port, "/model/anthropic/v1/messages"))
        added = sorted(v - d for v, d in zip(via, direct, strict=True))
        return added[n // 2] * 1000, added[int(n * 0.99)] * 1000, n
    finally:
        proc.kill()
        proc.wait()
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    for figure in run(int(sys.argv[1]) if len(sys.argv) > 1 else 3):
        print(figure)
