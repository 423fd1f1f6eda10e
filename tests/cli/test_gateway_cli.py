"""`ringfence gateway serve` as a real process in front of a real git host: clone works, the audit file holds one
line per request without the token, and bad options are refused by name."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ringfence.gateway.routes import check_branch
from tests.cli.test_cli import ringfence
from tests.cli.test_egress_cli import free_port
from tests.gateway.git_host import GitHost, git, make_repository

TOKEN = "ghp_CLI_TOKEN_abcdef123456"


def test_gateway_serve_clones_through_and_keeps_the_token_out(tmp_path: Path) -> None:
    make_repository(tmp_path / "host", "acme", "widgets")
    host = GitHost(tmp_path / "host", TOKEN)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    port = free_port()
    audit = tmp_path / "gateway.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGFENCE_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ringfence", "gateway", "serve", "--listen", f"127.0.0.1:{port}", "--upstream",
         host.url, "--repo", "acme/widgets", "--branch", "ringfence/s1", "--token-file", str(token_file),
         "--audit", str(audit)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and "gateway on http://127.0.0.1" in proc.stdout.readline()
        cloned = git("clone", "-q", f"http://127.0.0.1:{port}/git/acme/widgets.git", str(tmp_path / "w"))
        assert cloned.returncode == 0, cloned.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=10)
        host.close()
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert records and all(r["decision"] == "allow" and r["repository"] == "acme/widgets" for r in records)
    assert TOKEN not in audit.read_text() and TOKEN not in stderr and TOKEN not in cloned.stderr


def test_gateway_serve_refuses_bad_options_by_name(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("abc\n")
    token.chmod(0o644)
    base = ["gateway", "serve", "--upstream", "http://127.0.0.1:1", "--repo", "a/b", "--branch", "x"]
    done = ringfence(*base, "--token-file", str(token), data_dir=tmp_path)
    assert done.returncode == 2 and "readable by others" in done.stderr
    token.chmod(0o600)
    for args, message in (
        (["--repo", "a"], "is not OWNER/NAME"),
        (["--branch", "a..b"], "not a valid branch name"),
        (["--upstream", "ftp://x"], "is not an http(s) base URL"),
        (["--upstream", "https://user:pw@host"], "must not carry a credential"),
        (["--auth", "digest"], "is not basic or bearer"),
        (["--token-file", str(tmp_path / "missing")], "cannot read token file"),
    ):
        args_map = dict(zip(base[2::2], base[3::2], strict=True)) | {"--token-file": str(token)}
        args_map.update(dict(zip(args[::2], args[1::2], strict=True)))
        argv = ["gateway", "serve", *[x for kv in args_map.items() for x in kv]]
        done = ringfence(*argv, data_dir=tmp_path)
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)


@pytest.mark.parametrize(
    "branch", ["", "-x", "refs/heads/x", "a..b", "a b", "a~1", "a^", "a:b", "a?", "a*", "a[", "a\\b", "x.lock", "x/",
               "/x", "a//b", ".a", "a/.b", "@", "a@{1}", "x."]
)  # fmt: skip
def test_branch_names_follow_gits_rules(branch: str) -> None:
    with pytest.raises(ValueError):
        check_branch(branch)
    assert check_branch("ringfence/sess_1") == "ringfence/sess_1"
