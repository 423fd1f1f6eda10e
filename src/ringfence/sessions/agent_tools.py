"""The agent CLIs in sandboxes: the install check that runs an agent where sessions will run it.

Owns: `sandbox_check`, the `check` given to ringfence.agents.install: it creates a sandbox of the given backend
with the new install mounted as a tool (read-only, its `bin` on the PATH) and runs `<command> --version` there as
the sandbox's unprivileged user, so what is recorded as installed is what a session can start.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from ringfence.agents.install import Check, InstallError
from ringfence.sandbox.base import SandboxBackend
from ringfence.sandbox.spec import SandboxError, SandboxSpec


def sandbox_check(backend: SandboxBackend) -> Check:
    def check(name: str, directory: Path, binary: str) -> str:
        async def run() -> tuple[int, str]:
            sandbox = await backend.create(SandboxSpec(tools={name: directory}))
            try:
                done = await sandbox.run([binary, "--version"], timeout=120)
            finally:
                await sandbox.destroy()
            said = (done.stdout or done.stderr).decode("utf-8", "replace").strip()
            return done.exit.code, said

        try:
            code, said = asyncio.run(run())
        except SandboxError as exc:
            raise InstallError(f"no sandbox to check {binary} in: {exc}") from None
        if code != 0:
            raise InstallError(f"the installed {binary} does not run in a sandbox (exit {code}): {said[-300:]}")
        return said.splitlines()[0] if said else ""

    return check
