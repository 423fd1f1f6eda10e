"""`ringfence sandbox exec` through a real subprocess and a real sandbox."""

from __future__ import annotations

import subprocess
from pathlib import Path

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
    assert list(sandbox_root.iterdir()) == []  # destroyed afterwards


def test_exec_refusals_are_clear(sandbox_root: Path, tmp_path: Path) -> None:  # noqa: F811
    proxy = sandbox_exec(sandbox_root, tmp_path, "--network", "proxy", "--", "true")
    assert proxy.returncode == 2 and "needs the proxy bridge" in proxy.stderr
    late = sandbox_exec(sandbox_root, tmp_path, "--timeout", "0.3", "--", "sleep", "5")
    assert late.returncode == 137 and "ran past its timeout" in late.stderr
    hidden = sandbox_exec(tmp_path / "private", tmp_path, "--", "true")
    assert hidden.returncode == 2 and "which other users cannot traverse" in hidden.stderr


def test_doctor_reports_what_is_enforced(tmp_path: Path) -> None:
    done = ringfence("doctor", data_dir=tmp_path / "d")
    assert done.returncode == 0, done.stdout
    for line in ("bubblewrap", "seccomp", "limit: memory", "limit: pids", "limit: cpu share", "sandbox start"):
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
