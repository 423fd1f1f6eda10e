"""The git route from inside a real sandbox: `git clone http://127.0.0.1:8080/git/...` through the bridge to the
session's gateway socket and on to a real host. SECURITY-CASES G1: the token is nowhere the sandbox can look."""

from __future__ import annotations

import base64
from pathlib import Path

from ringfence.gateway.git_proxy import Credential, Gateway, GitSession
from ringfence.gateway.routes import Repository
from ringfence.sandbox import BubblewrapBackend, SandboxSpec
from ringfence.sandbox.spec import ProxyRoutes
from ringfence.store.crypto import Secret
from tests.gateway.git_host import GitHost, loopback_dialer, make_repository
from tests.sandbox.conftest import backend, run, sandbox_root  # noqa: F401 (fixtures)

TOKEN = "ghs_SANDBOXTOKEN_0123456789"
SCRIPT = """
set -e
git clone -q http://127.0.0.1:8080/git/acme/widgets.git repo
cd repo
git -c user.name=a -c user.email=a@x checkout -q -b ringfence/s1
echo change > agent.txt
git add agent.txt
git -c user.name=a -c user.email=a@x commit -q -m agent
git push -q origin HEAD:refs/heads/ringfence/s1
git push origin HEAD:refs/heads/main 2>&1 || echo PUSH-TO-MAIN-REFUSED
echo SCAN
env; git config -l; cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'; grep -r . /workspace 2>/dev/null | head -c 2000000
"""


def test_g1_a_sandboxed_git_uses_the_gateway_and_never_sees_the_token(
    backend: BubblewrapBackend,  # noqa: F811
    tmp_path: Path,
) -> None:
    make_repository(tmp_path / "host", "acme", "widgets")
    host = GitHost(tmp_path / "host", TOKEN)

    async def go() -> tuple[bytes, bytes]:
        gateway = Gateway(dialer=loopback_dialer())
        gateway.add_session(
            GitSession(
                "s1", Repository.parse("acme/widgets"), "ringfence/s1", host.url, Credential("basic", Secret(TOKEN))
            )
        )
        egress_sock, gateway_sock = tmp_path / "egress.sock", tmp_path / "gateway.sock"
        await gateway.listen_unix("s1", gateway_sock)
        sandbox = await backend.create(
            SandboxSpec(network="proxy", proxies=ProxyRoutes(egress=egress_sock, gateway=gateway_sock))
        )
        try:
            done = await sandbox.run(["sh", "-c", SCRIPT], timeout=120)
            return done.stdout, done.stderr
        finally:
            await sandbox.destroy()
            await gateway.close()

    try:
        stdout, stderr = run(go())
    finally:
        host.close()
    text = (stdout + stderr).decode(errors="replace")
    assert "PUSH-TO-MAIN-REFUSED" in text and "ringfence" in text, text[-2000:]
    forms = [
        TOKEN,
        base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode(),
        base64.b64encode(TOKEN.encode()).decode(),
    ]
    assert not any(form in text for form in forms)
    branch = host.root / "acme" / "widgets.git" / "refs" / "heads" / "ringfence" / "s1"
    assert branch.exists() or "ringfence/s1" in (host.root / "acme" / "widgets.git" / "packed-refs").read_text()
    assert all(seen.authorized for seen in host.seen)
