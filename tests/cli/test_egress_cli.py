"""`ringfence egress serve` as a real process: decisions on the wire, one JSON line per attempt, nothing lost on a
clean stop, bad options refused with their name."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests.cli.test_cli import ringfence
from tests.egress.harness import RawUpstream, read_all, status_of


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_egress_serve_decides_audits_and_flushes_on_stop(tmp_path: Path) -> None:
    upstream = RawUpstream()
    port, metrics = free_port(), free_port()
    audit = tmp_path / "audit.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGFENCE_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ringfence", "egress", "serve", "--listen", f"127.0.0.1:{port}", "--mode", "custom",
         "--allow", "ok.example", "--deny", "*.bad.example", "--allow-range", "127.0.0.1/32",
         "--resolve", "ok.example=127.0.0.1", "--audit", str(audit), "--metrics", f"127.0.0.1:{metrics}"],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and "egress proxy on" in proc.stdout.readline()
        answers = []
        for target in (f"ok.example:{upstream.port}", "x.bad.example:443", "other.example:443"):
            with socket.create_connection(("127.0.0.1", port), 5) as sock:
                sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\nhello".encode())
                sock.shutdown(socket.SHUT_WR)
                answers.append(read_all(sock))
        with socket.create_connection(("127.0.0.1", metrics), 5) as sock:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            scraped = read_all(sock).decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
        upstream.close()
    assert [status_of(a) for a in answers] == [200, 403, 403]
    assert answers[0].endswith(b"hello")
    assert 'ringfence_egress_connections_total{decision="deny",rule="deny"} 1' in scraped
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [r["decision"] for r in records] == ["allow", "deny", "deny"]  # all flushed at the clean stop
    assert [r["rule"] for r in records] == ["allow:ok.example", "deny:*.bad.example", "mode:custom"]
    assert audit.stat().st_mode & 0o777 == 0o600


def test_egress_serve_refuses_bad_options_by_name(tmp_path: Path) -> None:
    for args, message in (
        (["--mode", "open"], "network mode 'open' is not one of"),
        (["--allow", "*.com"], "too broad"),
        (["--allow-range", "10.0.0.1/8"], "is not a network"),
        (["--listen", "localhost"], "has no port"),
        (["--resolve", "nothing"], "is not NAME=ADDRESS"),
    ):
        done = ringfence("egress", "serve", *args, data_dir=tmp_path)
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)
