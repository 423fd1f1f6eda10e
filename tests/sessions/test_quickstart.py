"""The quickstart as a user meets it: `ringfence serve` prints a demo token and repository, and the printed
`ringfence session` commands start a session, prompt it, show it (with its gateway records) and end it."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from tests.gateway.git_host import git


def two_free_ports() -> int:
    """A port whose next one is free too (the demo's git host listens there), both bindable the way the
    servers bind them (SO_REUSEADDR), so a port held by any socket at all is not chosen."""
    for _ in range(50):
        with socket.socket() as a, socket.socket() as b:
            for sock in (a, b):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            try:
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise RuntimeError("no two consecutive free ports")


def test_serve_prints_a_working_quickstart(tmp_path: Path) -> None:
    base = Path(tempfile.mkdtemp(prefix="rf-quick-"))
    base.chmod(0o711)
    server = Server(tmp_path / "data", base / "sandboxes", two_free_ports())
    session, repo = server.session, server.repo
    try:
        started = session("start", "--repo", repo)
        assert started.returncode == 0, started.stderr
        assert "clone through the gateway" in started.stderr and "100%" in started.stderr, started.stderr  # its bars
        sid = started.stdout.strip().splitlines()[-1]
        prompted = session("prompt", sid, "add a note")
        assert prompted.returncode == 0 and "edited AGENT_NOTES.md" in prompted.stdout, prompted.stderr
        logs = session("logs", sid)
        assert logs.returncode == 0 and "add a note" in logs.stdout and "AGENT_NOTES.md" in logs.stdout, logs.stderr
        assert session("rate", sid, "3").returncode == 0
        assert session("rate", sid, "7").returncode == 2
        sent = session("feedback", sid, "worked well")
        assert sent.returncode == 0 and "kept until" in sent.stdout, sent.stderr
        shown = session("show", sid)
        assert shown.returncode == 0 and "gateway.request" in shown.stdout and "allow" in shown.stdout, shown.stdout
        assert "example.com" in shown.stdout and "169.254.169.254" in shown.stdout  # the demo's denied attempts
        assert "-> 403" in prompted.stdout
        pushed = session("prompt", sid, "push main")  # the agent tries to push to main: the gateway refuses
        assert "git push origin HEAD:refs/heads/main -> 1" in pushed.stdout, pushed.stdout
        refused = " ".join(session("show", sid).stdout.split())
        assert "git:push" in refused and "deny" in refused, refused
        ended = session("end", sid)
        assert ended.returncode == 0 and "session ended" in ended.stdout, ended.stderr
        bare = tmp_path / "data" / "githost" / "demo" / "example.git"
        assert git("--git-dir", str(bare), "rev-parse", f"refs/heads/ringfence/{sid}").returncode == 0
        missing = session("show", "ses_nope")
        assert missing.returncode == 1 and "404" in missing.stderr
    finally:
        server.stop()
        leftovers = list((base / "sandboxes").glob("sbx_*"))
        shutil.rmtree(base, ignore_errors=True)
    assert leftovers == []  # the ended session's sandbox is gone, and the server stopped cleanly


class Server:
    """`ringfence serve` as a real process with its own data and sandbox directories."""

    def __init__(
        self, data: Path, sandboxes: Path, port: int, *, until: tuple[str, ...] = ("session show",),
        backend: str = "bubblewrap",
    ) -> None:  # fmt: skip
        """Started, and read until every line of `until` was printed (the demo's quickstart, by default)."""
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RINGFENCE_")}
        self.env.update(RINGFENCE_DATA_DIR=str(data), RINGFENCE_SANDBOX_DIR=str(sandboxes),
                        RINGFENCE_LISTEN=f"127.0.0.1:{port}", RINGFENCE_SANDBOX_BACKEND=backend,
                        COLUMNS="200")  # fmt: skip
        self.port = port
        self.proc = subprocess.Popen([sys.executable, "-m", "ringfence", "serve"], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=self.env)  # fmt: skip
        self.printed = ""
        assert self.proc.stdout is not None
        while not all(wanted in self.printed for wanted in until):
            line = self.proc.stdout.readline()
            assert line, self.printed
            self.printed += line
        demo_token = re.search(r"RINGFENCE_TOKEN=(\S+)", self.printed)
        self.token = demo_token.group(1) if demo_token else ""
        demo_repo = re.search(r"--repo (\S+)", self.printed)
        self.repo = demo_repo.group(1) if demo_repo else ""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.1)

    def session(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ringfence", "session", *args], capture_output=True, text=True,
                              env={**self.env, "RINGFENCE_TOKEN": self.token}, timeout=300)  # fmt: skip

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=20)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _leftovers(sandboxes: Path, sid: str) -> list[str]:
    """Processes of a sandbox or session (a runsc kernel, file proxy or delete among them), and runsc state."""
    found = subprocess.run(["pgrep", "-af", f"sbx_|ringfence/{sid}"], capture_output=True, text=True).stdout.split("\n")
    state = sandboxes / ".runsc"
    return [line for line in found if line.strip()] + [p.name for p in state.glob("*")] if state.is_dir() else found


@pytest.mark.parametrize("backend", ["bubblewrap", "gvisor"])
def test_sigkill_mid_session_leaves_no_orphans_and_the_session_resumes(tmp_path: Path, backend: str) -> None:
    base = Path(tempfile.mkdtemp(prefix="rf-crash-"))
    base.chmod(0o711)
    port = two_free_ports()
    first = Server(tmp_path / "data", base / "sandboxes", port, backend=backend)
    try:
        started = first.session("start", "--repo", first.repo)
        assert started.returncode == 0, started.stderr
        sid = started.stdout.strip().splitlines()[-1]
        assert first.session("prompt", sid, "before the crash").returncode == 0
        assert list((base / "sandboxes").glob("sbx_*"))  # a live sandbox exists
    finally:
        first.kill()  # SIGKILL: no cleanup at all
    second = Server(tmp_path / "data", base / "sandboxes", port, backend=backend)
    try:
        assert not list((base / "sandboxes").glob("sbx_*"))  # reconciled at start: no orphan sandbox
        deadline = time.monotonic() + 10  # runsc's own delete of a dead sandbox's state takes it a second or two
        while (left := [line for line in _leftovers(base / "sandboxes", sid) if line.strip()]) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.2)
        assert left == [], left
        shown = second.session("show", sid)
        flat = " ".join(shown.stdout.split())
        assert shown.returncode == 0 and "running: False" in flat and "interrupted: True" in flat, shown.stdout
        assert f"backend: {backend}" in flat, flat
        resumed = second.session("resume", sid)
        assert resumed.returncode == 0, resumed.stderr
        assert "interrupted: False" in " ".join(second.session("show", sid).stdout.split())
        assert second.session("prompt", sid, "after the crash").returncode == 0
        assert second.session("end", sid).returncode == 0
        bare = tmp_path / "data" / "githost" / "demo" / "example.git"
        log = git("--git-dir", str(bare), "log", "--format=%s", f"refs/heads/ringfence/{sid}").stdout
        assert "agent: after the crash" in log
    finally:
        second.stop()
        shutil.rmtree(base, ignore_errors=True)
    verify = subprocess.run([sys.executable, "-m", "ringfence", "audit", "verify"], capture_output=True, text=True,
                            env=second.env)  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_busy_demo_port_is_named_and_the_server_still_serves(tmp_path: Path) -> None:
    base = Path(tempfile.mkdtemp(prefix="rf-busy-"))
    base.chmod(0o711)
    port = two_free_ports()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port + 1))
        squatter.listen()
        server = Server(tmp_path / "data", base / "sandboxes", port, until=("admin token", "no demo"))
        try:
            assert f"cannot listen on 127.0.0.1:{port + 1}" in server.printed and "demo = false" in server.printed
            token = re.search(r"admin token:\s+(\S+)", server.printed).group(1)  # type: ignore[union-attr]
            me = httpx.get(f"http://127.0.0.1:{port}/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=30)
            assert me.json()["server_admin"] is True
        finally:
            server.stop()
            shutil.rmtree(base, ignore_errors=True)
