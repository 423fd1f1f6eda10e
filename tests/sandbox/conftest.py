"""A bubblewrap backend under a directory sandbox uids can traverse, destroyed after each test."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ringfence.sandbox import BubblewrapBackend


@pytest.fixture
def sandbox_root() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="rf-sbx-"))
    base.chmod(0o711)
    yield base / "sandboxes"
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def backend(sandbox_root: Path) -> BubblewrapBackend:
    return BubblewrapBackend(sandbox_root)


def run(coro):
    return asyncio.run(coro)
