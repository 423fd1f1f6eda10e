"""Shared fixtures: the packaged policy, a fresh store on a real SQLite file, and fixed times."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from ringfence.policy import PolicyRules, load_rules
from ringfence.store.db import Store, open_store

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="session")
def rules() -> PolicyRules:
    return load_rules()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def store(data_dir: Path, rules: PolicyRules) -> Store:
    opened = open_store(f"sqlite:///{data_dir / 'ringfence.db'}", data_dir / "master.key", rules=rules)
    yield opened
    opened.engine.dispose()
