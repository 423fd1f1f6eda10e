"""A session's model calls (issue 15, M1): the agent in the sandbox calls ANTHROPIC_BASE_URL and OPENAI_BASE_URL
with placeholder keys; the gateway sends the account's provider key (x-api-key for anthropic, a bearer token for
openai), never the placeholder, to exactly `base_url/...`; an unconfigured provider answers with how to set it;
the provider's own host is refused by the egress proxy; the key is nowhere in the sandbox."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ringfence.egress.proxy import EgressProxy
from ringfence.gateway.credentials import StaticToken
from ringfence.gateway.git_proxy import Gateway
from ringfence.net.addresses import AddressPolicy
from ringfence.net.resolve import CachingResolver, StaticResolver
from ringfence.sandbox import BubblewrapBackend
from ringfence.sessions.manager import Environment, RepositoryHost, SessionManager, StoreModels
from ringfence.store import accounts, providers
from ringfence.store.crypto import Secret
from ringfence.store.db import Store
from tests.gateway.git_host import GitHost, loopback_dialer
from tests.sandbox.conftest import backend, sandbox_root  # noqa: F401 (fixtures)
from tests.sandbox.test_escapes import probe
from tests.sessions.test_manager import NOW, TOKEN, caller, host, turn  # noqa: F401 (fixture)

ANTHROPIC_KEY = "sk-ant-SESSION-PROVIDER-1122"
OPENAI_KEY = "sk-openai-SESSION-PROVIDER-3344"


class StandIn:
    """A provider on loopback that records each request's path and headers and answers a small JSON body."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                stand_in.seen.append({"path": self.path, "headers": dict(self.headers.items()), "body": body})
                answer = json.dumps({"ok": True, "usage": {"input_tokens": 3, "output_tokens": 5}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    server = StandIn()
    yield server
    server.close()


CALLS = (
    'curl -s -X POST "$ANTHROPIC_BASE_URL/v1/messages" -H "x-api-key: $ANTHROPIC_API_KEY" '
    "-H 'content-type: application/json' -d '{\"model\": \"claude-x\"}'; echo; "
    'curl -s -X POST "$OPENAI_BASE_URL/chat/completions" -H "Authorization: Bearer $OPENAI_API_KEY" '
    "-H 'content-type: application/json' -d '{\"model\": \"gpt-x\"}'; echo; "
    'curl -s -X POST "http://127.0.0.1:8080/model/mistral/v1/chat" -d "{}"; echo; '
    "curl -s -o /dev/null -w '%{http_connect}' https://api.anthropic.com/v1/messages; echo"
)


def test_model_calls_carry_the_accounts_key_never_the_placeholder(
    store: Store,
    backend: BubblewrapBackend,  # noqa: F811
    host: GitHost,  # noqa: F811
    tmp_path: Path,
    stand_in: StandIn,
) -> None:
    org = accounts.create_organization(store, "acme", "team", NOW, actor="t")
    member = accounts.create_user(store, "m", NOW, actor="t", org_id=org.id)
    repo = accounts.connect_repository(store, member.id, f"{host.url}/acme/widgets.git", NOW, actor="t")
    providers.set_provider(store, org.id, "anthropic", None, f"{stand_in.url}/anthropic", Secret(ANTHROPIC_KEY),
                           NOW, actor="t")  # fmt: skip
    providers.set_provider(store, org.id, "openai", None, f"{stand_in.url}/openai/v1", Secret(OPENAI_KEY),
                           NOW, actor="t")  # fmt: skip
    env = Environment(network="trusted", agent=("sh", "-c", "{prompt}"))

    async def go() -> tuple[str, Any]:
        names = StaticResolver({"api.anthropic.com": ["127.0.0.1"]})  # never asked: refused by name first
        egress = EgressProxy(AddressPolicy.parse([]), CachingResolver(names))
        manager = SessionManager(
            store, backend, tmp_path / "run", egress, Gateway(dialer=loopback_dialer()),
            RepositoryHost(host.url, lambda _r: StaticToken("basic", Secret(TOKEN))), lambda: NOW,
            models=StoreModels(store),
        )  # fmt: skip
        try:
            live = await manager.start(caller(store, member.id), repo.id, env)
            output, _ = await turn(manager, live.id, CALLS)
            [scan] = await probe(live.sandbox, ("proc_scan",))
            await manager.delete(live.id, actor=member.id)
            return output, scan
        finally:
            await manager.shutdown()

    output, scan = asyncio.run(go())
    anthropic, openai = stand_in.seen
    assert anthropic["path"] == "/anthropic/v1/messages" and anthropic["headers"]["x-api-key"] == ANTHROPIC_KEY
    assert openai["path"] == "/openai/v1/chat/completions"  # base_url/... exactly: no doubled /v1
    assert {k.lower(): v for k, v in openai["headers"].items()}["authorization"] == f"Bearer {OPENAI_KEY}", openai
    for seen in stand_in.seen:
        assert "ringfence-placeholder-key" not in json.dumps(seen["headers"])
    lines = output.splitlines()
    assert '"ok": true' in lines[0] and '"ok": true' in lines[1]
    assert "model provider 'mistral' is not configured" in output and "/providers/mistral" in output
    assert lines[-1].strip() == "403"  # api.anthropic.com straight: refused, the gateway is the one route
    leaked = [entry for entry, text in scan.items() if ANTHROPIC_KEY in text or OPENAI_KEY in text]
    assert leaked == []
