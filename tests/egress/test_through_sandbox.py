"""The whole egress path from inside a real sandbox: tools' own proxy settings -> the bridge -> the session's
Unix socket -> the egress proxy -> a local upstream. The audit names the session of the socket."""

from __future__ import annotations

from pathlib import Path

from ringfence.egress.audit import BatchedAudit
from ringfence.egress.proxy import EgressProxy
from ringfence.egress.rules import EgressPolicy
from ringfence.net.addresses import AddressPolicy
from ringfence.net.resolve import CachingResolver, StaticResolver
from ringfence.sandbox import BubblewrapBackend, SandboxSpec
from ringfence.sandbox.spec import ProxyRoutes
from tests.egress.harness import http_upstream
from tests.sandbox.conftest import backend, run, sandbox_root  # noqa: F401 (fixtures)


def test_a_sandboxed_curl_goes_out_only_through_the_egress_proxy(
    backend: BubblewrapBackend,  # noqa: F811
    tmp_path: Path,
) -> None:
    web = http_upstream()
    port = web.server_address[1]
    records: list[dict] = []

    async def go() -> tuple[bytes, bytes, bytes]:
        audit = BatchedAudit(records.extend, lambda: "t", interval=0.01)
        audit.start()
        proxy = EgressProxy(
            AddressPolicy.parse(["127.0.0.1/32"]),
            CachingResolver(StaticResolver({"ok.example": ["127.0.0.1"], "no.example": ["127.0.0.1"]})),
            audit,
        )
        proxy.add_session("session-a", EgressPolicy.build("custom", [f"ok.example:{port}"]))
        socket_path = tmp_path / "egress-a.sock"
        await proxy.listen_unix("session-a", socket_path)
        sandbox = await backend.create(SandboxSpec(network="proxy", proxies=ProxyRoutes(egress=socket_path)))
        try:
            allowed = await sandbox.run(
                ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://ok.example:{port}/"], timeout=30
            )
            denied = await sandbox.run(
                ["curl", "-s", "-D", "-", "-o", "/dev/null", f"http://no.example:{port}/"], timeout=30
            )
            # A tool that speaks only SOCKS reaches the same proxy at the same address (socks5h: names resolved
            # by the proxy, never in the sandbox).
            socks = await sandbox.run(
                ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-x", "socks5h://127.0.0.1:3128",
                 f"http://ok.example:{port}/"],
                timeout=30,
            )  # fmt: skip
            return allowed.stdout, denied.stdout, socks.stdout
        finally:
            await sandbox.destroy()
            await proxy.close()
            await audit.close()

    try:
        allowed, denied, socks = run(go())
    finally:
        web.shutdown()
        web.server_close()
    assert allowed == b"200" and socks == b"200"
    assert denied.startswith(b"HTTP/1.1 403") and b"X-Ringfence-Deny: no.example" in denied
    assert [(r["session"], r["method"], r["decision"], r["host"]) for r in records] == [
        ("session-a", "GET", "allow", "ok.example"),
        ("session-a", "GET", "deny", "no.example"),
        ("session-a", "SOCKS5", "allow", "ok.example"),
    ]
