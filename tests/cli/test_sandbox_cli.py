"""`ringfence sandbox exec` through a real subprocess and a real sandbox."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
from pathlib import Path

from ringfence.sandbox import diskimage
from tests.cli.test_cli import ringfence
from tests.sandbox.conftest import sandbox_root  # noqa: F401 (fixture)


def sandbox_exec(root: Path, data: Path, *args: str) -> subprocess.CompletedProcess:
    """`ringfence sandbox exec --sandbox-dir ROOT ARGS...` as a real subprocess."""
    return ringfence("sandbox", "exec", "--sandbox-dir", str(root), *args, data_dir=data / "d")


def test_exec_streams_output_and_returns_the_exit_code(sandbox_root: Path, tmp_path: Path) -> None:  # noqa: F811
    done = sandbox_exec(sandbox_root, tmp_path, "--", "sh", "-c", "id -u; ls /; echo oops >&2; exit 7")
    assert done.returncode == 7
    assert done.stdout.splitlines()[0] == "1000"
    assert "workspace" in done.stdout and "root" not in done.stdout.split()
    assert done.stderr == "oops\n"
    # Destroyed afterwards: at most the shared cache of formatted workspace images remains.
    assert [p.name for p in sandbox_root.iterdir()] == [diskimage.TEMPLATES]


def test_exec_refusals_are_clear(sandbox_root: Path, tmp_path: Path) -> None:  # noqa: F811
    proxy = sandbox_exec(sandbox_root, tmp_path, "--network", "proxy", "--", "true")
    assert proxy.returncode == 2 and "--network proxy needs --egress-socket" in proxy.stderr
    stray = sandbox_exec(sandbox_root, tmp_path, "--egress-socket", str(tmp_path / "e.sock"), "--", "true")
    assert stray.returncode == 2 and "are for --network proxy" in stray.stderr
    rooted = tmp_path / "root-owned"
    rooted.mkdir()
    as_root = sandbox_exec(sandbox_root, tmp_path, "--workspace", str(rooted), "--", "true")
    assert as_root.returncode == 2 and "belongs to root, and a sandbox never runs as root" in as_root.stderr
    missing = sandbox_exec(sandbox_root, tmp_path, "--workspace", str(tmp_path / "nope"), "--", "true")
    assert missing.returncode == 2 and "is not a directory" in missing.stderr
    late = sandbox_exec(sandbox_root, tmp_path, "--timeout", "0.3", "--", "sleep", "5")
    assert late.returncode == 137 and "ran past its timeout" in late.stderr
    hidden = sandbox_exec(tmp_path / "private", tmp_path, "--", "true")
    assert hidden.returncode == 2 and "which other users cannot traverse" in hidden.stderr


def test_doctor_reports_what_is_enforced(tmp_path: Path) -> None:
    done = ringfence("doctor", data_dir=tmp_path / "d")
    assert done.returncode == 0, done.stdout
    for line in (
        "bubblewrap",
        "seccomp",
        "limit: memory",
        "limit: pids",
        "limit: cpu share",
        "limit: workspace size",
        "proxy bridge",
        "sandbox start",
        "gvisor (runsc)",
        "process limit kept",  # by gVisor's own cgroups, read from inside a sandbox given one
    ):
        assert line in done.stdout
    assert "NOT" not in done.stdout


def test_limits_from_the_command_line(sandbox_root: Path, tmp_path: Path) -> None:  # noqa: F811
    bomb = sandbox_exec(
        sandbox_root,
        tmp_path,
        "--memory",
        "64M",
        "--",
        "/usr/bin/python3",
        "-c",
        "x = bytearray(300 * 2**20); print('allocated')",
    )
    assert bomb.returncode == 137 and "allocated" not in bomb.stdout
    forks = sandbox_exec(
        sandbox_root,
        tmp_path,
        "--pids",
        "8",
        "--",
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 2 & done; wait",
    )
    assert "fork" in forks.stderr.lower()
    bad = sandbox_exec(sandbox_root, tmp_path, "--memory", "lots", "--", "true")
    assert bad.returncode == 2 and "size 'lots' is not a number" in bad.stderr


def test_exec_in_an_operators_workspace_runs_as_its_owner_and_keeps_it(
    sandbox_root: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    hidden = tmp_path / "hidden"  # pytest's tmp_path is 0700: its owner can't reach it
    hidden.mkdir()
    os.chown(hidden, 65534, 65534)
    unreachable = sandbox_exec(sandbox_root, tmp_path, "--workspace", str(hidden), "--", "true")
    assert unreachable.returncode == 2 and "which its owner (uid 65534) cannot traverse" in unreachable.stderr
    project = sandbox_root.parent / "project"  # under a 0711 directory
    project.mkdir()
    (project / "README").write_text("hello from the host\n")
    for path in (project, project / "README"):
        os.chown(path, 65534, 65534)
    done = sandbox_exec(
        sandbox_root, tmp_path, "--workspace", str(project), "--", "sh", "-c", "cat README; echo made > out"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hello from the host\n"
    assert (project / "out").read_text() == "made\n"  # kept after the sandbox is gone
    assert (project / "out").stat().st_uid == 65534  # written as the directory's owner, not root


def test_exec_workspace_size_from_the_command_line(sandbox_root: Path, tmp_path: Path) -> None:  # noqa: F811
    done = sandbox_exec(
        sandbox_root, tmp_path, "--workspace-size", "64M", "--", "sh", "-c", "dd if=/dev/zero of=f bs=1M count=100"
    )
    assert done.returncode != 0 and "No space left on device" in done.stderr


def test_exec_in_proxy_mode_reaches_the_given_socket(sandbox_root: Path, tmp_path: Path) -> None:  # noqa: F811
    path = tmp_path / "egress.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen()

    def answer_once() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(b"egress of this session: " + conn.recv(100))

    thread = threading.Thread(target=answer_once, daemon=True)
    thread.start()
    script = (
        "import os, socket; s = socket.create_connection(('127.0.0.1', 3128)); s.sendall(b'hi'); "
        "print(s.recv(100).decode(), os.environ['HTTPS_PROXY'], os.environ['no_proxy'])"
    )
    try:
        done = sandbox_exec(
            sandbox_root,
            tmp_path,
            "--network",
            "proxy",
            "--egress-socket",
            str(path),
            "--",
            "/usr/bin/python3",
            "-c",
            script,
        )
    finally:
        with contextlib.suppress(OSError):  # wakes a still-blocked accept before its descriptor is freed
            server.shutdown(socket.SHUT_RDWR)
        thread.join(5)
        server.close()
    assert done.returncode == 0, done.stderr
    assert done.stdout == "egress of this session: hi http://127.0.0.1:3128 127.0.0.1,localhost,::1\n"
