"""`ringfence provider ...` and `ringfence repo ...`: model providers and repositories through the server's API.

A provider belongs to the caller's account: their organization (its admins set it) or, for a consumer, their own.
Keys and tokens are read from files (never from the command line, where `ps` and shell history would keep them)
and are never printed back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ringfence.cli.api_client import Server, Token, call, client, run
from ringfence.cli.common import DataDir
from ringfence.cli.console import err, out

app = typer.Typer(no_args_is_help=True, help="Model providers: where your account's agents' model calls go.")
repo_app = typer.Typer(no_args_is_help=True, help="Repositories: connect one, store the token it needs.")
Name = Annotated[str, typer.Argument(help="the provider's name (anthropic and openai imply their kind)")]
KeyFile = Annotated[Path, typer.Option("--key-file", help="a file holding the provider's API key")]
Org = Annotated[str | None, typer.Option(help="the organization (default: yours)")]
TokenFile = Annotated[Path | None, typer.Option("--token-file", help="a file holding the repository's token")]


def _secret(path: Path, what: str) -> str:
    try:
        value = path.read_text().strip()
    except OSError as exc:
        err.print(f"[bold red]error:[/] cannot read {what} from {path}: {exc.strerror}")
        raise typer.Exit(2) from None
    if not value:
        err.print(f"[bold red]error:[/] {path} is empty: it must hold the {what}")
        raise typer.Exit(2)
    return value


def _account_path(base: str, bearer: str, org: str | None) -> str:
    """Where the caller's providers live: their organization's, or a consumer's own."""
    me = run(lambda: call(base, bearer, "GET", "/v1/me"))
    org_id = org or me.get("org_id")
    return f"/v1/organizations/{org_id}/providers" if org_id else f"/v1/users/{me['id']}/providers"


@app.command("set")
def set_provider(
    name: Name,
    base_url: Annotated[str, typer.Option("--base-url", help="exactly what the provider's SDK takes")],
    key_file: KeyFile,
    kind: Annotated[str | None, typer.Option(help="anthropic or openai")] = None,
    org: Org = None,
    server: Server = None,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """Create or replace a model provider of your account."""
    base, bearer = client(server, token, data_dir)
    body: dict[str, Any] = {"base_url": base_url, "api_key": _secret(key_file, "API key")}
    if kind is not None:
        body["kind"] = kind
    where = _account_path(base, bearer, org)
    made = run(lambda: call(base, bearer, "PUT", f"{where}/{name}", body))
    out.print(f"provider {made['name']} ({made['kind']}) set: {made['base_url']}")


@app.command("list")
def list_providers(
    org: Org = None,
    server: Server = None,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """Your account's model providers (never their keys)."""
    base, bearer = client(server, token, data_dir)
    where = _account_path(base, bearer, org)
    table = Table("name", "kind", "base URL", "updated")
    for p in run(lambda: call(base, bearer, "GET", where)):
        table.add_row(p["name"], p["kind"], p["base_url"], p["updated_at"])
    out.print(table)


@app.command("delete")
def delete_provider(
    name: Name,
    org: Org = None,
    server: Server = None,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """Remove a model provider of your account."""
    base, bearer = client(server, token, data_dir)
    where = _account_path(base, bearer, org)
    run(lambda: call(base, bearer, "DELETE", f"{where}/{name}"))
    out.print(f"provider {name} deleted")


def _store_token(base: str, bearer: str, user_id: str, repo_id: str, token_file: Path, kind: str) -> None:
    body = {"kind": kind, "token": _secret(token_file, "token")}
    run(lambda: call(base, bearer, "PUT", f"/v1/users/{user_id}/repositories/{repo_id}/credential", body))


@repo_app.command("connect")
def connect(
    url: Annotated[str, typer.Argument(help="https://HOST/OWNER/NAME")],
    token_file: TokenFile = None,
    kind: Annotated[str, typer.Option(help="basic (x-access-token:TOKEN) or bearer")] = "basic",
    server: Server = None,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """Connect a repository (and store the token a private one needs)."""
    base, bearer = client(server, token, data_dir)
    me = run(lambda: call(base, bearer, "GET", "/v1/me"))
    repo = run(lambda: call(base, bearer, "POST", f"/v1/users/{me['id']}/repositories", {"url": url}))
    if token_file is not None:
        _store_token(base, bearer, me["id"], repo["id"], token_file, kind)
    out.print(f"repository {repo['owner']}/{repo['name']} connected: {repo['id']}"
              + (" (with its token)" if token_file is not None else ""))  # fmt: skip


@repo_app.command("credential")
def credential(
    repo_id: Annotated[str, typer.Argument(help="the repository's id (ringfence repo connect prints it)")],
    token_file: Annotated[Path, typer.Option("--token-file", help="a file holding the repository's token")],
    kind: Annotated[str, typer.Option(help="basic (x-access-token:TOKEN) or bearer")] = "basic",
    server: Server = None,
    token: Token = None,
    data_dir: DataDir = None,
) -> None:
    """Store (or replace) the token the gateway adds for one of your repositories."""
    base, bearer = client(server, token, data_dir)
    me = run(lambda: call(base, bearer, "GET", "/v1/me"))
    _store_token(base, bearer, me["id"], repo_id, token_file, kind)
    out.print(f"token stored for repository {repo_id}")
