"""`ringfence gateway serve`: the credential gateway alone, for one repository and one branch."""

from __future__ import annotations

import asyncio
import signal
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from ringfence.cli.console import err, exits_on, out
from ringfence.egress.audit import BatchedAudit, JsonlWriter
from ringfence.gateway import redact
from ringfence.gateway.credentials import CredentialSource, GitHubApp, GitHubInstallationTokens, StaticToken
from ringfence.gateway.git_proxy import Gateway, GitSession
from ringfence.gateway.routes import Repository, check_branch
from ringfence.net.addresses import AddressPolicy
from ringfence.net.dial import Dialer, endpoints_of
from ringfence.net.hostport import HostError, parse_target
from ringfence.net.resolve import CachingResolver, DnsResolver
from ringfence.store.crypto import Secret

app = typer.Typer(no_args_is_help=True, help="The credential gateway.")


@app.callback()
def group() -> None:
    """The credential gateway."""  # a group, even with one command: `ringfence gateway serve`


def read_secret_file(path: Path, what: str) -> str:
    """The content of `path`, which only its owner may read (a secret readable by others is refused)."""
    try:
        info = path.stat()
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            mode = stat.S_IMODE(info.st_mode)
            raise ValueError(f"{what} {path} is readable by others (mode {mode:04o}): chmod 600 it")
        return path.read_text().strip()
    except OSError as exc:
        raise ValueError(f"cannot read {what} {path}: {exc.strerror}") from None


def read_token(path: Path) -> Secret:
    token = read_secret_file(path, "token file")
    if not token or any(c.isspace() for c in token):
        raise ValueError(f"token file {path} does not hold one token")
    return Secret(token)


@app.command("serve")
@exits_on(OSError, ValueError)
def serve(
    upstream: Annotated[str, typer.Option(help="base URL of the repository host, e.g. https://github.com")],
    repo: Annotated[str, typer.Option(help="OWNER/NAME: the one repository served")],
    branch: Annotated[str, typer.Option(help="the one branch pushes may update")],
    token_file: Annotated[
        Path | None, typer.Option(help="file holding the host token (mode 0600); or use a GitHub App")
    ] = None,
    listen: Annotated[str, typer.Option(help="HOST:PORT to listen on")] = "127.0.0.1:8080",
    unix: Annotated[Path | None, typer.Option(help="also listen on this Unix socket")] = None,
    auth: Annotated[str, typer.Option(help="how the host takes the token: basic or bearer")] = "basic",
    audit: Annotated[Path | None, typer.Option(help="append one JSON line per request here")] = None,
    session: Annotated[str, typer.Option(help="the session name written in audit records")] = "default",
    github_app_id: Annotated[
        str | None, typer.Option(help="GitHub App id: mint installation tokens for this repository instead")
    ] = None,
    github_key_file: Annotated[Path | None, typer.Option(help="the GitHub App's private key (PEM, mode 0600)")] = None,
    github_api: Annotated[str, typer.Option(help="GitHub API URL (GitHub Enterprise: https://HOST/api/v3)")] = (
        "https://api.github.com"
    ),
) -> None:
    """Serve http://LISTEN/git/OWNER/NAME.git: clone and fetch that repository, push only to BRANCH; the token is
    added upstream and never returned."""
    try:
        repository = Repository.parse(repo)
        credential: CredentialSource
        if github_app_id is not None:
            if github_key_file is None or token_file is not None:
                raise ValueError("--github-app-id needs --github-key-file, and no --token-file")
            key = Secret(read_secret_file(github_key_file, "GitHub App key file"))
            redact.install(key)
            trusted_api = Dialer(
                AddressPolicy.parse([]), CachingResolver(DnsResolver()), endpoints=endpoints_of(github_api)
            )
            credential = GitHubInstallationTokens(GitHubApp(github_app_id, key, github_api), repository, trusted_api)
        else:
            if token_file is None:
                raise ValueError("give --token-file (or --github-app-id with --github-key-file)")
            token = read_token(token_file)
            if auth not in ("basic", "bearer"):
                raise ValueError(f"--auth {auth!r} is not basic or bearer")
            redact.install(token)
            credential = StaticToken("bearer" if auth == "bearer" else "basic", token)
        git_session = GitSession(session, repository, check_branch(branch), upstream, credential)
        where = parse_target(listen, "--listen")
    except (ValueError, HostError) as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    asyncio.run(_serve(git_session, where.host, where.port, unix, audit))


async def _serve(git_session: GitSession, host: str, port: int, unix: Path | None, audit_file: Path | None) -> None:
    audit = (
        BatchedAudit(JsonlWriter(audit_file), lambda: datetime.now(UTC).isoformat()) if audit_file is not None else None
    )
    if audit is not None:
        audit.start()
    # The upstream is trusted as the operator configured it: its own addresses and port, exactly; anything
    # else only if public (a redirect or a second name never reaches the operator's network).
    dialer = Dialer(
        AddressPolicy.parse([]), CachingResolver(DnsResolver()), endpoints=endpoints_of(git_session.upstream)
    )
    gateway = Gateway(audit, dialer=dialer)
    gateway.add_session(git_session)
    bound = await gateway.listen_tcp(git_session.session_id, host, port)
    if unix is not None:
        await gateway.listen_unix(git_session.session_id, unix)
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    out.print(f"gateway on http://{shown}:{bound[1]}{git_session.repository.path} (push: {git_session.branch})")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await gateway.close()
    if unix is not None:
        unix.unlink(missing_ok=True)
    if audit is not None:
        await audit.close()
