"""What every CLI command shares: settings from flags/file/environment, opening the store, and turning known
errors into one line on stderr with a non-zero exit (never a traceback, never a secret)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer

from ringfence.cli.console import exits_on
from ringfence.config import ConfigError, Settings, load_settings
from ringfence.policy import PolicyError, RulesError, load_rules
from ringfence.store.crypto import CryptoError
from ringfence.store.db import Store, open_store
from ringfence.store.errors import StoreError

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="where ringfence keeps its data (env RINGFENCE_DATA_DIR)")
]

P = ParamSpec("P")
R = TypeVar("R")


def settings(data_dir: Path | None = None, **overrides: Any) -> Settings:
    return load_settings({"data_dir": data_dir, **overrides})


def store_from(config: Settings, *, create: bool = True) -> Store:
    rules = load_rules(config.policy_file) if config.policy_file else None
    return open_store(config.db_url, config.key_file, rules=rules, create=create)


def now() -> datetime:
    return datetime.now(UTC)


reports_errors = exits_on(PolicyError, RulesError, StoreError, CryptoError, ConfigError, OSError)
"""Known refusals print `error: ...` and exit 2; the message names what was wrong."""
