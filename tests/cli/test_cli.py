"""The `ringfence` command through real subprocesses: outputs, exit codes, and errors that name the problem."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from ringfence.policy import explain, format_time
from ringfence.store import content
from ringfence.store.db import open_store
from tests.conftest import T0
from tests.policy.test_scenario import POLICY_MD_EXAMPLE
from tests.servers import free_port
from tests.store.helpers import consumer


def ringfence(*args: str, data_dir: Path | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGFENCE_")}
    env["COLUMNS"] = "200"
    if data_dir is not None:
        env["RINGFENCE_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "ringfence", *args], capture_output=True, text=True, env=env, input=stdin, timeout=120
    )


def test_policy_explain_prints_the_documented_json(tmp_path: Path, rules) -> None:
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps(POLICY_MD_EXAMPLE))
    done = ringfence("policy", "explain", str(scenario), data_dir=tmp_path / "d")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == explain(rules, json.dumps(POLICY_MD_EXAMPLE))
    piped = ringfence("policy", "explain", "-", stdin=json.dumps(POLICY_MD_EXAMPLE), data_dir=tmp_path / "d")
    assert piped.stdout == done.stdout


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s["accounts"].__setitem__(0, {"id": "u1", "plan": "ultra"}), "unknown plan 'ultra'"),
        (lambda s: s["events"].__setitem__(2, {**s["events"][2], "seq": 1}), "event seq 1: duplicate seq"),
        (
            lambda s: s["accounts"].__setitem__(1, {"id": "org1", "plan": "vertex"}),
            "event seq 3: plan 'vertex' cannot join the Development Partner Program",
        ),
        (lambda s: s.__setitem__("at", "tomorrow"), "at: invalid time 'tomorrow'"),
    ],
)
def test_policy_explain_errors_exit_non_zero_and_name_the_event(tmp_path: Path, mutate, message: str) -> None:
    scenario = json.loads(json.dumps(POLICY_MD_EXAMPLE))
    mutate(scenario)
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(scenario))
    done = ringfence("policy", "explain", str(path), data_dir=tmp_path / "d")
    assert done.returncode == 2
    assert done.stdout == ""
    assert message in done.stderr and "Traceback" not in done.stderr


def test_policy_explain_of_a_missing_file(tmp_path: Path) -> None:
    done = ringfence("policy", "explain", str(tmp_path / "nope.json"), data_dir=tmp_path / "d")
    assert done.returncode == 2 and "nope.json" in done.stderr


RECENT = datetime.now(UTC) - timedelta(days=2)  # the CLI runs on the real clock


def _seed(data_dir: Path) -> tuple[str, str]:
    """An old session long expired (setting off: 30 days) and a recent one eligible for training."""
    store = open_store(f"sqlite:///{data_dir / 'ringfence.db'}", data_dir / "master.key")
    old = content.start_session(store, consumer(store, training=False).id, T0, repository_id=None)
    content.put_content(store, old.id, "prompt", "old prompt", T0, turn=1)
    recent = content.start_session(store, consumer(store, training=True).id, RECENT, repository_id=None)
    content.put_content(store, recent.id, "prompt", "recent prompt", RECENT, turn=1)
    store.engine.dispose()
    return old.id, recent.id


def test_sweep_export_and_audit_commands(tmp_path: Path) -> None:
    data = tmp_path / "data"
    old, recent = _seed(data)
    dry = ringfence("sweep", "--dry-run", data_dir=data)
    assert dry.returncode == 0 and "would delete 1 session(s)" in dry.stdout and old in dry.stdout
    swept = ringfence("sweep", data_dir=data)
    assert swept.returncode == 0 and "deleted 1 session(s)" in swept.stdout
    assert "deleted 0 session(s)" in ringfence("sweep", data_dir=data).stdout

    out = tmp_path / "export.jsonl"
    at = format_time(RECENT + timedelta(days=1))
    exported = ringfence("export", "--at", at, "--out", str(out), data_dir=data)
    assert exported.returncode == 0, exported.stderr
    assert [json.loads(line)["session"] for line in out.read_text().splitlines()] == [recent]
    assert json.loads(Path(f"{out}.manifest.json").read_text())["sessions"] == [recent]
    bad_time = ringfence("export", "--at", "2026-01-01", "--out", str(out), data_dir=data)
    assert bad_time.returncode == 2 and "time zone is required" in bad_time.stderr

    verified = ringfence("audit", "verify", data_dir=data)
    assert verified.returncode == 0 and "audit log intact" in verified.stdout
    exported_log = ringfence("audit", "export", data_dir=data)
    records = [json.loads(line) for line in exported_log.stdout.splitlines()]
    assert records[-1]["kind"] == "export.training"
    assert "recent prompt" not in exported_log.stdout

    with sqlite3.connect(data / "ringfence.db") as raw:
        raw.execute("UPDATE audit_records SET subject = 'forged' WHERE seq = 3")
    broken = ringfence("audit", "verify", data_dir=data)
    assert broken.returncode == 1
    assert "BROKEN at record 3" in broken.stderr


def test_a_missing_master_key_is_a_clear_error_and_loses_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _seed(data)
    (data / "master.key").rename(tmp_path / "moved.key")
    done = ringfence("sweep", data_dir=data)
    assert done.returncode == 2
    assert "master key file" in done.stderr and "restore that key file" in done.stderr
    assert not (data / "master.key").exists()
    (tmp_path / "moved.key").rename(data / "master.key")
    assert ringfence("audit", "verify", data_dir=data).returncode == 0


def test_serve_prints_an_address_and_a_working_admin_token(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGFENCE_")}
    env["COLUMNS"] = "60"  # narrower than the lines printed: they must not wrap
    proc = subprocess.Popen(
        [sys.executable, "-m", "ringfence", "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(line.startswith("try:") for line in lines):
            lines.append(proc.stdout.readline())
        text = "".join(lines)
        shows_address = f"http://127.0.0.1:{port}/" in text
        assert shows_address  # a bool: the printed text holds the token
        one_line_command = (
            re.search(r"try:\s+curl -H 'Authorization: Bearer rf_\S+' http://127\.0\.0\.1:\d+/v1/me\n", text)
            is not None
        )
        assert one_line_command  # a bool: a failure must not print the token
        token = re.search(r"admin token:\s+(\S+)", text).group(1)
        for _ in range(200):
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/v1/me", headers={"Authorization": f"Bearer {token}"})
                break
            except httpx.ConnectError:
                time.sleep(0.05)
        assert answer.status_code == 200 and answer.json()["server_admin"] is True
        assert (data / "master.key").stat().st_mode & 0o777 == 0o600
        assert (data / "admin-token").stat().st_mode & 0o777 == 0o600
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()
    assert proc.returncode in (0, -15)
