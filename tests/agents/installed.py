"""The real agent CLIs for the tests: installed once by `ringfence agent install` (the Makefile's `test-agents`
does it into .cache/test-agents and passes RINGFENCE_TEST_AGENTS), or here on first use with the same code."""

from __future__ import annotations

import os
from pathlib import Path

from ringfence.agents.install import AgentInstalls
from ringfence.sandbox import BubblewrapBackend
from ringfence.sessions.agent_tools import sandbox_check

ROOT = Path(__file__).resolve().parents[2]


def installed_agents(sandbox_root: Path) -> AgentInstalls:
    installs = AgentInstalls(Path(os.environ.get("RINGFENCE_TEST_AGENTS") or ROOT / ".cache" / "test-agents"))
    have = installs.tools()
    for name in ("claude-code", "codex"):
        if name not in have:
            installs.install(name, sandbox_check(BubblewrapBackend(sandbox_root)))
    return installs
