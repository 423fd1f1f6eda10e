"""The fake backend keeps the interface's contract (one Exit after the output, workspace-relative paths, destroy
idempotent and final, reconcile), and serves a layer above: the agent installer's check in a sandbox
(ringfence.sessions.agent_tools) gives the tool to the sandbox, reads its version and names a failure, with no
sandbox runtime at all."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from ringfence.agents.install import InstallError
from ringfence.sandbox.base import SandboxBackend
from ringfence.sandbox.spec import Completed, Exit, Output, SandboxError, SandboxSpec
from ringfence.sessions.agent_tools import sandbox_check
from ringfence.testing.fake_backend import FakeBackend


def test_the_fake_keeps_the_interfaces_contract() -> None:
    def handler(argv: Sequence[str], cwd: str, files: dict[str, bytes]) -> Completed:
        files["made"] = b"by " + argv[0].encode()
        return Completed(b"out", b"err", Exit(3))

    async def go() -> None:
        backend: SandboxBackend = FakeBackend(handler)
        box = await backend.create(SandboxSpec())
        events = [event async for event in box.exec(["tool"], cwd="sub")]
        assert events == [Output("stdout", b"out"), Output("stderr", b"err"), Exit(3)]
        assert await box.read_file("made") == b"by tool"
        await box.write_file("a/b.txt", b"x")
        assert (await box.run(["tool"])).exit == Exit(3)
        for bad in ("../x", "/etc/passwd", "", "a/../../x"):
            with pytest.raises(SandboxError, match="not a path inside the workspace"):
                await box.read_file(bad)
        with pytest.raises(SandboxError):
            await box.run([])
        kept = await backend.create(SandboxSpec())
        assert await backend.reconcile(keep={kept.id}) == [box.id]
        await box.destroy()  # idempotent
        with pytest.raises(SandboxError, match="was destroyed"):
            await box.run(["tool"])

    asyncio.run(go())


def test_a_layer_above_runs_against_the_fake(tmp_path: Path) -> None:
    def version(argv: Sequence[str], cwd: str, files: dict[str, bytes]) -> Completed:
        if argv == ["claude", "--version"]:
            return Completed(b"2.1.337 (Claude Code)\n", b"", Exit(0))
        return Completed(b"", b"claude: broken install\n", Exit(1))

    backend = FakeBackend(version)
    assert sandbox_check(backend)("claude-code", tmp_path, "claude") == "2.1.337 (Claude Code)"
    assert backend.made[0].spec.tools == {"claude-code": tmp_path} and backend.live == []  # given, then destroyed
    with pytest.raises(InstallError, match=r"does not run in a sandbox \(exit 1\): claude: broken install"):
        sandbox_check(backend)("claude-code", tmp_path, "codex")
    with pytest.raises(InstallError, match="no sandbox to check claude in: no runtime here"):
        sandbox_check(FakeBackend(refuse="no runtime here"))("claude-code", tmp_path, "claude")
