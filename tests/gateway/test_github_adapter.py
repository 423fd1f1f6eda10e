"""The github adapter's calls, checked against a local server that enforces GitHub's documented request shapes:
an RS256 app JWT, the repository's installation, a token for that one repository with minimal permissions,
re-minted before expiry, revoked at the end (SECURITY-CASES G11)."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ringfence.gateway.credentials import (
    SESSION_PERMISSIONS,
    CredentialError,
    GitHubApp,
    GitHubInstallationTokens,
)
from ringfence.gateway.routes import Repository
from ringfence.store.crypto import Secret
from tests.gateway.git_host import loopback_dialer

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PEM = KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class FakeGitHub:
    """Checks every request as GitHub would and records it."""

    def __init__(self, *, lifetime: timedelta = timedelta(hours=1), installed: bool = True) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.minted = 0
        self.revoked: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: Any = None) -> None:
                payload = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _app_jwt_ok(self) -> bool:
                auth = self.headers.get("Authorization", "")
                if not auth.startswith("Bearer "):
                    return False
                header, claims, signature = auth[7:].split(".")
                signed = f"{header}.{claims}".encode()
                try:
                    KEY.public_key().verify(_unb64(signature), signed, padding.PKCS1v15(), hashes.SHA256())
                except InvalidSignature:
                    return False
                decoded = json.loads(_unb64(claims))
                return (
                    json.loads(_unb64(header)) == {"alg": "RS256", "typ": "JWT"}
                    and decoded["iss"] == "12345"
                    and 0 < decoded["exp"] - decoded["iat"] <= 600
                )

            def _shape_ok(self) -> bool:
                return (
                    self.headers.get("Accept") == "application/vnd.github+json"
                    and self.headers.get("X-GitHub-Api-Version") == "2022-11-28"
                    and bool(self.headers.get("User-Agent"))
                )

            def do_GET(self) -> None:
                fake.calls.append(("GET", self.path, None))
                if self.path == "/repos/acme/widgets/installation" and self._shape_ok() and self._app_jwt_ok():
                    self._reply(200, {"id": 77}) if installed else self._reply(404, {"message": "Not Found"})
                else:
                    self._reply(401, {"message": "Bad credentials"})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.calls.append(("POST", self.path, body))
                if (
                    self.path == "/app/installations/77/access_tokens"
                    and self._shape_ok()
                    and self._app_jwt_ok()
                    and self.headers.get("Content-Type") == "application/json"
                    and body == {"repositories": ["widgets"], "permissions": SESSION_PERMISSIONS}
                ):
                    fake.minted += 1
                    expires = datetime.now(UTC) + lifetime
                    self._reply(201, {"token": f"ghs_minted_{fake.minted}", "expires_at": expires.isoformat()})
                else:
                    self._reply(422, {"message": "Invalid request"})

            def do_DELETE(self) -> None:
                fake.calls.append(("DELETE", self.path, None))
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                if self.path == "/installation/token" and self._shape_ok() and token.startswith("ghs_minted_"):
                    fake.revoked.append(token)
                    self._reply(204)
                else:
                    self._reply(401)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    server = FakeGitHub()
    yield server
    server.close()


def tokens(url: str) -> GitHubInstallationTokens:
    return GitHubInstallationTokens(
        GitHubApp("12345", Secret(PEM), url), Repository.parse("acme/widgets"), loopback_dialer()
    )


def basic_token(header: bytes) -> str:
    return base64.b64decode(header.removeprefix(b"Basic ")).decode().removeprefix("x-access-token:")


def test_a_token_for_one_repository_is_minted_reused_and_revoked(github: FakeGitHub) -> None:
    source = tokens(github.url)

    async def go() -> tuple[str, str]:
        now = datetime.now(UTC).timestamp()
        first = basic_token(await source.authorization(now))
        again = basic_token(await source.authorization(now + 60))
        await source.discard()
        return first, again

    first, again = asyncio.run(go())
    assert first == again == "ghs_minted_1" and github.minted == 1
    assert [c[0] for c in github.calls] == ["GET", "POST", "DELETE"]
    assert github.revoked == ["ghs_minted_1"]


def test_tokens_are_re_minted_before_they_expire() -> None:
    server = FakeGitHub(lifetime=timedelta(minutes=4))  # inside the 5-minute margin: every use re-mints
    try:
        source = tokens(server.url)

        async def go() -> list[str]:
            now = datetime.now(UTC).timestamp()
            return [basic_token(await source.authorization(now + i)) for i in range(2)]

        assert asyncio.run(go()) == ["ghs_minted_1", "ghs_minted_2"]
        assert [c[0] for c in server.calls] == ["GET", "POST", "POST"]  # the installation is looked up once
    finally:
        server.close()


def test_an_app_not_installed_on_the_repository_is_a_clear_error() -> None:
    server = FakeGitHub(installed=False)
    try:
        with pytest.raises(CredentialError, match="not installed on acme/widgets"):
            asyncio.run(tokens(server.url).authorization(datetime.now(UTC).timestamp()))
    finally:
        server.close()


def test_a_wrong_key_is_refused_by_the_host_and_reported_without_secrets(github: FakeGitHub) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    source = GitHubInstallationTokens(
        GitHubApp("12345", Secret(other.decode()), github.url), Repository.parse("acme/widgets"), loopback_dialer()
    )
    with pytest.raises(CredentialError, match="HTTP 401") as refused:
        asyncio.run(source.authorization(datetime.now(UTC).timestamp()))
    assert "PRIVATE KEY" not in str(refused.value)


def test_the_github_api_is_dialed_through_the_address_policy(github: FakeGitHub) -> None:
    """T4: an API URL on an address the operator's policy refuses is never called, and the error says why."""
    from ringfence.net.addresses import AddressPolicy
    from ringfence.net.dial import Dialer
    from ringfence.net.resolve import CachingResolver, StaticResolver

    public_only = Dialer(AddressPolicy.parse([]), CachingResolver(StaticResolver({})))
    source = GitHubInstallationTokens(GitHubApp("12345", Secret(PEM), github.url), Repository.parse("acme/widgets"),
                                      public_only)  # fmt: skip
    with pytest.raises(CredentialError, match=r"not reachable from this server: .*loopback"):
        asyncio.run(source.authorization(datetime.now(UTC).timestamp()))
    assert github.calls == []
