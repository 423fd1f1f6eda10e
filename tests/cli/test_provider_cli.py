"""`ringfence provider` and `ringfence repo` against a real server: keys and tokens come from files, are never
printed, and what the server refuses is said in one line with a non-zero exit."""

from __future__ import annotations

from pathlib import Path

from ringfence.api.app import create_app
from ringfence.store import accounts, credentials, providers
from ringfence.store.db import Store
from tests.cli.test_cli import ringfence
from tests.conftest import T0
from tests.servers import serving

KEY = "sk-ant-CLI-PROVIDER-KEY-2468"


def test_providers_and_repository_tokens_from_the_command_line(store: Store, tmp_path: Path) -> None:
    org = accounts.create_organization(store, "acme", "team", T0, actor="t")
    admin = accounts.create_user(store, "a", T0, actor="t", org_id=org.id, org_admin=True)
    admin_token = accounts.create_api_key(store, admin.id, "t", T0, actor="t")[1].reveal()
    consumer = accounts.create_user(store, "c", T0, actor="t", plan="pro")
    consumer_token = accounts.create_api_key(store, consumer.id, "t", T0, actor="t")[1].reveal()
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    with serving(create_app(store, clock=lambda: T0)) as base:
        as_admin = ("--server", base, "--token", admin_token)
        made = ringfence("provider", "set", "anthropic", "--base-url", "https://api.anthropic.com", "--key-file",
                         str(key_file), *as_admin)  # fmt: skip
        assert made.returncode == 0, made.stderr
        assert "provider anthropic (anthropic) set" in made.stdout and KEY not in made.stdout + made.stderr
        listed = ringfence("provider", "list", *as_admin)
        assert "anthropic" in listed.stdout and KEY not in listed.stdout
        refused = ringfence("provider", "set", "llm", "--base-url", "http://169.254.169.254/", "--key-file",
                            str(key_file), "--kind", "openai", *as_admin)  # fmt: skip
        assert refused.returncode == 1 and "does not dial it" in refused.stderr and KEY not in refused.stderr
        empty = tmp_path / "empty"
        empty.write_text("")
        no_key = ringfence("provider", "set", "x", "--base-url", "https://x.example", "--key-file", str(empty),
                           "--kind", "openai", *as_admin)  # fmt: skip
        assert no_key.returncode == 2 and "is empty" in no_key.stderr
        as_consumer = ("--server", base, "--token", consumer_token)
        own = ringfence("provider", "set", "openai", "--base-url", "https://api.openai.com/v1", "--key-file",
                        str(key_file), *as_consumer)  # fmt: skip
        assert own.returncode == 0, own.stderr
        assert ringfence("provider", "delete", "anthropic", *as_admin).returncode == 0

        token_file = tmp_path / "repo-token"
        token_file.write_text("ghp_CLI_REPO_TOKEN\n")
        connected = ringfence("repo", "connect", "https://git.example/acme/private", "--token-file", str(token_file),
                              *as_consumer)  # fmt: skip
        assert connected.returncode == 0 and "(with its token)" in connected.stdout, connected.stderr
        assert "ghp_CLI_REPO_TOKEN" not in connected.stdout
    assert [p.name for p in providers.list_providers(store, org.id)] == []
    assert [p.name for p in providers.list_providers(store, consumer.id)] == ["openai"]
    [repo] = accounts.list_repositories(store, consumer.id)
    assert credentials.load_credential(store, repo.id)[1].reveal() == "ghp_CLI_REPO_TOKEN"
