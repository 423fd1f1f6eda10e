"""S-BOX B8 in bubblewrap in particular: the guide's table names every call the filter refuses, and personality
queries pass it. That the same calls are refused in every backend is the conformance suite's."""

from __future__ import annotations

import os
from typing import Any

import pytest

from ringfence.sandbox import BubblewrapBackend, SandboxSpec
from ringfence.sandbox.seccomp_filter import REFUSED, program
from tests.sandbox.conftest import run
from tests.sandbox.test_escapes import probe

# x86_64 numbers. Which calls every backend refuses is the conformance suite's (ringfence.testing.conformance.kernel);
# here, what bubblewrap's filter lets through that gVisor's kernel answers otherwise: personality queries.
PERSONALITY = 135


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="system call numbers are x86_64's")
def test_personality_queries_pass_the_filter(backend: BubblewrapBackend) -> None:
    async def go() -> list[Any]:
        sandbox = await backend.create(SandboxSpec())
        try:
            return await probe(sandbox, ("syscall", PERSONALITY, 0xFFFFFFFF), ("syscall", PERSONALITY, 0))
        finally:
            await sandbox.destroy()

    assert run(go()) == ["ok", "ok"]


def test_the_guide_documents_every_refusal() -> None:
    """The guide's table of the filter names every refused call (a refusal added without its line fails here)."""
    from pathlib import Path

    guide = (Path(__file__).parents[2] / "docs" / "guide.md").read_text()
    table = guide.split("<!-- seccomp table -->", 2)[1]
    missing = [name for name in REFUSED if f"`{name}`" not in table]
    assert missing == []
    assert program()  # and the filter compiles on this host
