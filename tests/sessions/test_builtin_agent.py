"""The built-in agent in a real sandbox with both proxies on the real path: it clones through the gateway, edits,
commits, makes one allowed and one denied request through the egress proxy, and its push to main is refused."""

from __future__ import annotations

from pathlib import Path

from ringfence.egress.audit import BatchedAudit
from ringfence.egress.proxy import EgressProxy
from ringfence.egress.rules import session_policy
from ringfence.gateway.credentials import StaticToken
from ringfence.gateway.git_proxy import Gateway, GitSession
from ringfence.gateway.routes import Repository
from ringfence.net.addresses import AddressPolicy
from ringfence.net.resolve import CachingResolver, StaticResolver
from ringfence.sandbox import BubblewrapBackend, SandboxSpec
from ringfence.sandbox.spec import ProxyRoutes
from ringfence.sessions import builtin_agent
from ringfence.store.crypto import Secret
from tests.egress.harness import http_upstream
from tests.gateway.git_host import GitHost, git, loopback_dialer, make_repository
from tests.sandbox.conftest import backend, run, sandbox_root  # noqa: F401 (fixtures)

TOKEN = "ghs_AGENT_TEST_TOKEN_123456"
BRANCH = "ringfence/sess_a"


def test_the_builtin_agent_exercises_the_whole_path(backend: BubblewrapBackend, tmp_path: Path) -> None:  # noqa: F811
    make_repository(tmp_path / "host", "acme", "widgets")
    host = GitHost(tmp_path / "host", TOKEN)
    web = http_upstream()
    port = web.server_address[1]
    egress_records: list[dict] = []

    async def go() -> str:
        audit = BatchedAudit(egress_records.extend, lambda: "t", interval=0.01)
        audit.start()
        proxy = EgressProxy(
            AddressPolicy.parse(["127.0.0.1/32"]),
            CachingResolver(StaticResolver({"ok.example": ["127.0.0.1"], "github.com": ["127.0.0.1"]})),
            audit,
        )
        proxy.add_session("sess_a", session_policy("custom", [f"ok.example:{port}"], repository_host="github.com"))
        gateway = Gateway(dialer=loopback_dialer())
        gateway.add_session(
            GitSession(
                "sess_a", Repository.parse("acme/widgets"), BRANCH, host.url, StaticToken("basic", Secret(TOKEN))
            )
        )
        egress_sock, gateway_sock = tmp_path / "e.sock", tmp_path / "g.sock"
        await proxy.listen_unix("sess_a", egress_sock)
        await gateway.listen_unix("sess_a", gateway_sock)
        sandbox = await backend.create(
            SandboxSpec(
                network="proxy",
                proxies=ProxyRoutes(egress=egress_sock, gateway=gateway_sock),
                env={"RINGFENCE_AGENT_TRY": f"http://ok.example:{port}/\nhttp://github.com/acme/widgets\n"},
            )
        )
        try:
            clone = await sandbox.run(
                ["sh", "-c", f"git clone -q http://127.0.0.1:8080/git/acme/widgets.git repo && "
                 f"git -C repo checkout -q -b {BRANCH}"],
                timeout=60,
            )  # fmt: skip
            assert clone.code == 0, clone.stderr
            await sandbox.write_file("agent.py", Path(builtin_agent.__file__).read_bytes())
            turn = await sandbox.run(["/usr/bin/python3", "agent.py", "add notes and push main"], timeout=120)
            end = await sandbox.run(["git", "-C", "repo", "push", "-q", "origin", f"HEAD:refs/heads/{BRANCH}"])
            assert end.code == 0, end.stderr
            return turn.stdout.decode()
        finally:
            await sandbox.destroy()
            await gateway.close()
            await proxy.close()
            await audit.close()

    try:
        transcript = run(go())
    finally:
        host.close()
        web.shutdown()
        web.server_close()
    assert "edited AGENT_NOTES.md" in transcript
    assert f"GET http://ok.example:{port}/ -> 200" in transcript
    assert "GET http://github.com/acme/widgets -> 403 (denied:" in transcript  # G10: only via the gateway
    assert "git push origin HEAD:refs/heads/main -> 1" in transcript and "ringfence" in transcript
    log = git("--git-dir", str(host.root / "acme" / "widgets.git"), "log", "--format=%s", f"refs/heads/{BRANCH}")
    assert log.stdout.splitlines()[0] == "agent: add notes and push main"
    # One record per attempt. The log is in completion order (a plain-HTTP record is written once its exchange
    # has ended, which can be after the client has already sent its next request), so match records by host.
    decided = sorted((r["host"], r["decision"]) for r in egress_records)
    assert decided == [("github.com", "deny"), ("ok.example", "allow")]
