"""The quickstart's demo (`make run`): a local repository host with an example repository, and a demo
organization, user and token that can start sessions on it at once. Made on first start, reused after."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ringfence.githost import GitHost, make_repository
from ringfence.sessions.environments import DEFAULT_NAME, EnvironmentSettings
from ringfence.store import accounts, environments
from ringfence.store.crypto import Secret
from ringfence.store.db import Store

DEMO_FILE = "demo.json"
TOKEN_FILE = "demo-token"  # noqa: S105 (a file name)


@dataclass
class Demo:
    token: Secret
    user_id: str
    repository_id: str
    host: GitHost


# The demo's default environment: the trusted preset, and the built-in agent trying two destinations the policy
# refuses without a DNS lookup or a packet leaving the machine (a host outside the preset, a metadata address),
# so the first session already shows denied connections in `session show` and in the console.
DEMO_ENVIRONMENT = EnvironmentSettings.model_validate(
    {
        "network": "trusted",
        "env": {"RINGFENCE_AGENT_TRY": "http://example.com/\nhttp://169.254.169.254/latest/meta-data/\n"},
    }
)


def start_demo(store: Store, data_dir: Path, port: int, at: datetime) -> Demo:
    """Serve data_dir/githost on 127.0.0.1:`port` (fixed, so the connected URL stays valid across restarts), and
    make the demo accounts the first time."""
    root = data_dir / "githost"
    if not (root / "demo" / "example.git").exists():
        make_repository(root, "demo", "example", commits=3)
    host = GitHost(root, None, port=port)
    saved = data_dir / DEMO_FILE
    token_path = data_dir / TOKEN_FILE
    if saved.exists() and token_path.exists():
        ids = json.loads(saved.read_text())
        token = Secret(token_path.read_text().strip())
        if accounts.authenticate(store, token.reveal()) is not None:
            return Demo(token, ids["user_id"], ids["repository_id"], host)
    org = accounts.create_organization(store, "demo", "team", at, actor="bootstrap")
    user = accounts.create_user(store, "demo", at, actor="bootstrap", org_id=org.id, org_admin=True)
    _, token = accounts.create_api_key(store, user.id, "demo token", at, actor="bootstrap")
    repo = accounts.connect_repository(store, user.id, f"{host.url}/demo/example.git", at, actor="bootstrap")
    environments.create_environment(store, org.id, DEFAULT_NAME, DEMO_ENVIRONMENT.model_dump(), at, actor="bootstrap")
    saved.write_text(json.dumps({"user_id": user.id, "repository_id": repo.id}))
    fd = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token.reveal() + "\n")
    return Demo(token, user.id, repo.id, host)
