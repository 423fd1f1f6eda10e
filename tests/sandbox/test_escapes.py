"""S-BOX B1, B2, B4 and B5 as real attempts from inside real bubblewrap sandboxes (tests/sandbox/probe.py reports):
what is particular to bubblewrap (its seccomp filter, host uids, host-side cgroups, the exact view of /). What every
backend guarantees is the conformance suite's (ringfence.testing.conformance, tests/sandbox/test_conformance.py)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from ringfence.sandbox import BubblewrapBackend, SandboxError, SandboxSpec, diskimage
from ringfence.sandbox.procs import processes_of as _processes_of
from tests.sandbox.conftest import run

PROBE = (Path(__file__).parent / "probe.py").read_bytes()


async def probe(sandbox: Any, *attempts: tuple) -> list[Any]:
    await sandbox.write_file("probe.py", PROBE)
    done = await sandbox.run(["/usr/bin/python3", "probe.py", json.dumps(attempts)], timeout=60)
    assert done.code == 0, done.stderr
    return json.loads(done.stdout)


def host_address() -> str:
    """A non-loopback address of this host (its own interface), for a listener the sandbox must not reach."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        return line.split()[3].split("/")[0]
    pytest.fail("this host has no non-loopback IPv4 address to listen on")


def listener(host: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.listen(8)
    sock.settimeout(0.5)
    return sock


def test_b1_no_route_out_at_the_network_layer(backend: BubblewrapBackend) -> None:
    listeners = [listener("127.0.0.1"), listener("::1"), listener(host_address())]
    try:
        targets = [("tcp", s.getsockname()[0], s.getsockname()[1]) for s in listeners]

        async def go() -> list[Any]:
            sandbox = await backend.create(SandboxSpec())
            try:
                return await probe(
                    sandbox,
                    *targets,
                    ("udp", "127.0.0.1", 53),
                    ("udp", "192.0.2.1", 53),
                    ("dns", "example.com"),
                    ("tcp", "192.0.2.1", 443),
                    ("run", ["cat", "/proc/net/route"]),
                )
            finally:
                await sandbox.destroy()

        results = run(go())
        for result in results[:3]:
            assert result.startswith("refused: ConnectionRefusedError") or "unreachable" in result.lower(), result
        assert results[3] == "sent"  # its own loopback: there is nothing there, and it is not the host's
        assert results[4].startswith("refused") and "unreachable" in results[4]
        assert results[5].startswith("refused")
        assert results[6].startswith("refused") and "unreachable" in results[6]
        assert results[7]["out"].count("\n") <= 1  # a routing table with no route at all
        for sock in listeners:
            with pytest.raises(TimeoutError):
                sock.accept()  # nothing from the sandbox ever arrived at the host's listeners
    finally:
        for sock in listeners:
            sock.close()


def test_b2_no_host_secrets(backend: BubblewrapBackend, tmp_path: Path, monkeypatch) -> None:
    secret_file = Path("/tmp") / f"rf-planted-secret-{os.getpid()}"
    secret_file.write_text("PLANTED-SECRET-FILE")
    secret_file.chmod(0o644)
    monkeypatch.setenv("RF_PLANTED_SECRET", "PLANTED-SECRET-ENV")

    async def go() -> list[Any]:
        first = await backend.create(SandboxSpec())
        other = await backend.create(SandboxSpec())
        await other.write_file("private.txt", b"OTHER-SESSION-DATA")
        try:
            other_path = str(backend.root / other.id / "workspace" / "private.txt")
            return await probe(
                first,
                ("env",),
                ("read", str(secret_file)),
                ("read", "/etc/shadow"),
                ("listdir", "/root"),
                ("listdir", "/home"),
                ("read", other_path),
                ("listdir", str(backend.root)),
                ("read", "/proc/1/environ"),
                ("listdir", "/"),
                ("run", ["sh", "-c", "ls -a /tmp /run 2>&1"]),
            )
        finally:
            await first.destroy()
            await other.destroy()

    try:
        results = run(go())
    finally:
        secret_file.unlink()
    env, *reads = results
    assert "RF_PLANTED_SECRET" not in env and "PLANTED" not in json.dumps(env)
    assert set(env) <= {"PATH", "HOME", "TMPDIR", "LANG", "TERM", "USER", "LOGNAME", "SHELL", "PWD", "LC_CTYPE"}
    for result in reads[:6]:
        assert isinstance(result, str) and result.startswith("refused: FileNotFoundError"), result
    assert "PLANTED" not in reads[6]  # pid 1 of the sandbox is bwrap's own init, with the rebuilt environment
    assert reads[7] == ["bin", "dev", "etc", "lib", "lib64", "proc", "sbin", "tmp", "usr", "workspace"]
    assert "rf-planted" not in reads[8]["out"]


def test_b4_nothing_survives_destroy(backend: BubblewrapBackend) -> None:
    async def go() -> tuple[int, Path, int]:
        sandbox = await backend.create(SandboxSpec())
        workspace = backend.root / sandbox.id
        uid = os.stat(workspace / "workspace").st_uid
        stream = sandbox.exec(
            [
                "sh",
                "-c",
                "setsid sleep 1000 >/dev/null 2>&1 & nohup sleep 1000 >/dev/null 2>&1 & echo ready; sleep 1000",
            ],
            timeout=None,
        )
        first = await anext(stream)
        assert first.data == b"ready\n"
        running = len(_processes_of(uid))  # the shell, two detached sleeps, the foreground sleep, bwrap's init
        await sandbox.destroy()
        await sandbox.destroy()  # idempotent
        await stream.aclose()
        return uid, workspace, running

    uid, workspace, running = run(go())
    assert running >= 4
    assert _processes_of(uid) == []
    assert not workspace.exists()


def test_b4_nothing_survives_the_server_being_killed(sandbox_root: Path) -> None:
    script = textwrap.dedent(f"""
        import asyncio, os, sys
        from pathlib import Path
        from ringfence.sandbox import BubblewrapBackend, SandboxSpec
        async def main():
            backend = BubblewrapBackend(Path({str(sandbox_root)!r}))
            sandbox = await backend.create(SandboxSpec())
            print(os.stat(backend.root / sandbox.id / "workspace").st_uid, sandbox.id, flush=True)
            async for _ in sandbox.exec(["sh", "-c", "echo started; sleep 1000"], timeout=None):
                print("running", flush=True)
        asyncio.run(main())
    """)
    server = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        uid, sandbox_id = server.stdout.readline().split()
        assert server.stdout.readline().strip() == "running"
        assert _processes_of(int(uid))
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
    finally:
        server.stdout.close()
    deadline = time.monotonic() + 10
    while _processes_of(int(uid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _processes_of(int(uid)) == []
    restarted = BubblewrapBackend(sandbox_root)
    assert run(restarted.reconcile(keep=set())) == [sandbox_id]
    assert not (sandbox_root / sandbox_id).exists()


def test_b5_no_privileges(backend: BubblewrapBackend) -> None:
    async def go() -> list[Any]:
        sandbox = await backend.create(SandboxSpec())
        try:
            return await probe(
                sandbox,
                ("status", "Uid", "CapEff", "CapPrm", "NoNewPrivs"),
                ("run", ["unshare", "--user", "--map-root-user", "id"]),
                ("run", ["mount", "-t", "tmpfs", "none", "/tmp"]),
                ("run", ["su", "-c", "id"]),
                ("run", ["sh", "-c", "ls /dev"]),
                ("run", ["sh", "-c", "kill -0 1 && echo can-signal-init; ps -e 2>/dev/null | wc -l"]),
            )
        finally:
            await sandbox.destroy()

    status, nested, mount, su, dev, _ = run(go())
    assert status["CapEff"] == status["CapPrm"] == "0000000000000000"
    assert status["NoNewPrivs"] == "1"
    assert status["Uid"].split()[0] == "1000"
    assert nested["code"] != 0
    assert mount["code"] != 0
    assert su["code"] != 0
    assert set(dev["out"].split()) <= {
        "console",
        "core",
        "fd",
        "full",
        "mqueue",
        "null",
        "ptmx",
        "pts",
        "random",
        "shm",
        "stderr",
        "stdin",
        "stdout",
        "tty",
        "urandom",
        "zero",
    }


def test_each_sandbox_has_its_own_host_uid_and_never_root(backend: BubblewrapBackend) -> None:
    if os.geteuid() != 0:
        pytest.fail("these tests run as root, as make test does on CI")

    async def go() -> tuple[int, int]:
        first, second = await backend.create(SandboxSpec()), await backend.create(SandboxSpec())
        await first.run(["sh", "-c", "echo x > made"])
        owners = (
            os.stat(backend.root / first.id / "workspace" / "made").st_uid,
            os.stat(backend.root / second.id / "workspace").st_uid,
        )
        await first.destroy()
        await second.destroy()
        return owners

    first_uid, second_uid = run(go())
    assert first_uid != second_uid and 0 not in (first_uid, second_uid)


def test_a_command_over_its_timeout_is_killed(backend: BubblewrapBackend) -> None:
    async def go() -> Any:
        sandbox = await backend.create(SandboxSpec())
        try:
            return await sandbox.run(["sh", "-c", "echo before; sleep 30"], timeout=0.5)
        finally:
            await sandbox.destroy()

    done = run(go())
    assert done.exit.timed_out and done.stdout == b"before\n"


def test_a_failed_create_leaves_nothing_behind(sandbox_root: Path, monkeypatch) -> None:
    backend = BubblewrapBackend(sandbox_root)
    from ringfence.sandbox import bubblewrap

    def refuse(*_: Any) -> None:
        raise SandboxError("cannot set the sandbox's limits in its cgroup: refused for the test")

    monkeypatch.setattr(bubblewrap, "SandboxCgroup", refuse)
    with pytest.raises(SandboxError, match="refused for the test"):
        run(backend.create(SandboxSpec()))
    # Nothing of that sandbox; at most the backend's shared cache of formatted workspace images.
    assert [p.name for p in sandbox_root.iterdir()] in ([], [diskimage.TEMPLATES])
    assert backend._uids == {}


def test_reconcile_leaves_another_live_processs_sandboxes_alone(sandbox_root: Path) -> None:
    """A server starting beside a running `sandbox exec` must not destroy that command's sandbox."""
    script = textwrap.dedent(f"""
        import asyncio
        from pathlib import Path
        from ringfence.sandbox import BubblewrapBackend, SandboxSpec
        async def main():
            sandbox = await BubblewrapBackend(Path({str(sandbox_root)!r})).create(SandboxSpec())
            print(sandbox.id, flush=True)
            await asyncio.sleep(60)
        asyncio.run(main())
    """)
    other = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        theirs = other.stdout.readline().strip()
        backend = BubblewrapBackend(sandbox_root)
        mine = run(backend.create(SandboxSpec())).id
        assert run(backend.reconcile(keep=set())) == [mine]  # unknown to the caller, so removed; theirs kept
        assert (sandbox_root / theirs).exists()
        other.kill()
        other.wait(timeout=10)
        assert run(backend.reconcile(keep=set())) == [theirs]  # its owner is gone now
    finally:
        other.kill()
        other.stdout.close()


def test_closing_a_commands_stream_early_ends_the_command_even_with_its_pipe_full(backend: BubblewrapBackend) -> None:
    """A reader that stops early (a client gone mid-prompt, a capture cut at its size) closes the stream: the
    command is ended and its cleanup finishes, though nobody reads its full pipe (asyncio's wait() waits for the
    pipe's end, which a paused pipe never saw: the close used to hang for ever)."""
    import contextlib

    async def go() -> tuple[int, list[int]]:
        sandbox = await backend.create(SandboxSpec())
        uid = os.stat(backend.root / sandbox.id / "workspace").st_uid
        try:
            stream = sandbox.exec(["sh", "-c", "yes aaaaaaaaaaaaaaaaaaaaaaaa | head -c 100000000; sleep 100"])
            async with contextlib.aclosing(stream) as events:
                async for _ in events:
                    break  # one chunk, then no more reading
            left = [pid for pid in _processes_of(uid) if b"sleep" in Path(f"/proc/{pid}/cmdline").read_bytes()]
            return uid, left
        finally:
            await sandbox.destroy()

    _, left = run(asyncio.wait_for(go(), 60))  # a hang fails here instead of stalling the suite
    assert left == []
