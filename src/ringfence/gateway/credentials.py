"""Where the gateway's repository credential comes from, at the moment it is injected.

Owns: the `CredentialSource` protocol (an Authorization header value, given the time), `StaticToken` (the
`generic` adapter and GitHub's personal-token fallback: a token as Basic `x-access-token:TOKEN` or Bearer),
`StoredToken` (the same, sealed in the store and unsealed at each injection), and
`GitHubInstallationTokens` (the `github` adapter: a GitHub App installation token minted for exactly one
repository with minimal permissions, re-minted before it expires, revoked at session end). Its HTTP calls follow
GitHub's REST API (apps: "Create an installation access token for an app", "Get a repository installation for
the authenticated app", installations: "Revoke an installation access token").
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol
from urllib.parse import SplitResult, urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ringfence.gateway.routes import Repository
from ringfence.net.dial import Dialer, DialRefused
from ringfence.net.hostport import HostError, url_target
from ringfence.store.crypto import Secret

API_VERSION = "2022-11-28"
# What a session needs: read and push code, open a pull request, read metadata. Nothing administrative.
SESSION_PERMISSIONS = {"contents": "write", "pull_requests": "write", "metadata": "read"}


class CredentialError(Exception):
    """A credential could not be obtained; the message says why and never holds a secret."""


class CredentialSource(Protocol):
    async def authorization(self, now: float, *, api: bool = False) -> bytes:
        """The Authorization header value to send upstream now (`now`: seconds since the epoch): for git's smart
        HTTP, or with `api` for the host's REST/GraphQL API (which takes the token as a bearer token)."""
        ...

    async def discard(self) -> None:
        """Forget (and where the host allows it, revoke) what was minted for this session."""
        ...


@dataclass(frozen=True)
class StaticToken:
    scheme: Literal["basic", "bearer"]
    token: Secret

    async def authorization(self, now: float, *, api: bool = False) -> bytes:
        raw = self.token.reveal()
        if self.scheme == "bearer" or api:
            return f"Bearer {raw}".encode()
        return b"Basic " + base64.b64encode(f"x-access-token:{raw}".encode())

    async def discard(self) -> None:
        return None


@dataclass(frozen=True)
class NoCredential:
    """For a host that needs none (a local demo host): nothing is added."""

    async def authorization(self, now: float, *, api: bool = False) -> bytes:
        return b""

    async def discard(self) -> None:
        return None


@dataclass(frozen=True)
class StoredToken:
    """A token kept sealed in the store (ringfence.store.credentials), unsealed at each injection and never kept
    in this process between requests. `load` returns its kind ("basic" or "bearer") and value."""

    load: Callable[[], tuple[str, Secret]]

    async def authorization(self, now: float, *, api: bool = False) -> bytes:
        try:
            kind, secret = await asyncio.to_thread(self.load)
        except Exception as exc:  # the store's messages never carry a secret
            raise CredentialError(f"the stored credential could not be read: {exc}") from None
        if kind not in ("basic", "bearer"):
            raise CredentialError(f"a stored credential of kind {kind!r} is not a token")
        return await StaticToken("bearer" if kind == "bearer" else "basic", secret).authorization(now, api=api)

    async def discard(self) -> None:
        return None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class GitHubApp:
    """A GitHub App: its id (or client id) and private key. `jwt` signs the short-lived app token (RS256) that
    GitHub takes for app-level calls. Written with `cryptography` directly: a JWT is three base64 parts and one
    signature, not worth a dependency."""

    app_id: str
    private_key: Secret  # PEM
    api_url: str = "https://api.github.com"

    def jwt(self, now: float) -> str:
        key = serialization.load_pem_private_key(self.private_key.reveal().encode(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise CredentialError("the GitHub App key is not an RSA private key")
        header = _b64url(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
        # 60 s back for clock drift, 9 minutes ahead (GitHub allows at most 10).
        claims = {"iat": int(now) - 60, "exp": int(now) + 540, "iss": self.app_id}
        payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
        signature = key.sign(f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{header}.{payload}.{_b64url(signature)}"


def _call(
    sock: socket.socket, api: SplitResult, method: str, path: str, bearer: str, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    """One API call over `sock`, already connected by the gateway's Dialer to an address it judged (http.client
    never dials: a name that rebinds between the check and the call cannot send it elsewhere)."""
    data = None if body is None else json.dumps(body).encode()
    headers = {
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": API_VERSION,
        "User-Agent": "ringfence-gateway",
        "Authorization": f"Bearer {bearer}",
    }
    if data is not None:
        headers["Content-Type"] = "application/json"
    host = api.hostname or ""
    connection = http.client.HTTPConnection(host, api.port, timeout=30)
    try:
        sock.setblocking(True)
        sock.settimeout(30)
        if api.scheme == "https":
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        connection.sock = sock
        connection.request(method, api.path.rstrip("/") + path, body=data, headers=headers)
        answer = connection.getresponse()
        raw = answer.read()
        if answer.status >= 400:
            return answer.status, None
        return answer.status, json.loads(raw) if raw else None
    except (http.client.HTTPException, TimeoutError, OSError, ValueError) as exc:
        raise CredentialError(f"GitHub API unreachable: {type(exc).__name__}") from None
    finally:
        connection.close()


@dataclass
class GitHubInstallationTokens:
    """Installation tokens for one session's repository: minted on first use, re-minted `margin` seconds before
    they expire (a long clone never meets an expired token), revoked by `discard` at session end."""

    app: GitHubApp
    repository: Repository
    dialer: Dialer  # every call to the API goes through the address policy, as every dial of the gateway does
    margin: float = 300.0
    permissions: dict[str, str] = field(default_factory=lambda: dict(SESSION_PERMISSIONS))
    _token: Secret | None = None
    _expires: float = 0.0
    _installation: int | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def _request(
        self, method: str, path: str, bearer: str, body: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        api = urlsplit(self.app.api_url)
        try:
            dialed = await self.dialer.connect(url_target(self.app.api_url))
        except HostError as exc:
            raise CredentialError(f"the GitHub API URL cannot be read: {exc}") from None
        except DialRefused as exc:
            raise CredentialError(f"the GitHub API is not reachable from this server: {exc.reason}") from None
        return await asyncio.to_thread(_call, dialed.sock, api, method, path, bearer, body)

    async def _mint(self, now: float) -> None:
        jwt = self.app.jwt(now)
        if self._installation is None:
            status, found = await self._request(
                "GET", f"/repos/{self.repository.owner}/{self.repository.name}/installation", jwt
            )
            if status != 200 or not isinstance(found, dict) or not isinstance(found.get("id"), int):
                raise CredentialError(f"the GitHub App is not installed on {self.repository} (HTTP {status})")
            self._installation = found["id"]
        status, minted = await self._request(
            "POST",
            f"/app/installations/{self._installation}/access_tokens",
            jwt,
            {"repositories": [self.repository.name], "permissions": self.permissions},
        )
        if status != 201 or not isinstance(minted, dict) or not isinstance(minted.get("token"), str):
            raise CredentialError(f"GitHub refused an installation token for {self.repository} (HTTP {status})")
        expires = datetime.fromisoformat(str(minted["expires_at"]).replace("Z", "+00:00")).timestamp()
        self._token, self._expires = Secret(minted["token"]), expires

    async def authorization(self, now: float, *, api: bool = False) -> bytes:
        async with self._lock:
            if self._token is None or now >= self._expires - self.margin:
                await self._mint(now)
            assert self._token is not None
            if api:
                return f"Bearer {self._token.reveal()}".encode()
            return b"Basic " + base64.b64encode(f"x-access-token:{self._token.reveal()}".encode())

    async def discard(self) -> None:
        async with self._lock:
            if self._token is not None:
                await self._request("DELETE", "/installation/token", self._token.reveal())
            self._token, self._expires = None, 0.0
