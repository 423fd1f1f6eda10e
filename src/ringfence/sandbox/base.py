"""The interface every sandbox backend implements (bubblewrap now; Kubernetes pods or microVMs later).

A sandbox is an isolated place with a workspace; commands run in it one at a time or side by side; files are put
in and taken out through the interface (paths relative to the workspace), never through a host path, so a
backend whose workspace is not on this host fits without change.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Protocol

from ringfence.sandbox.spec import Completed, Exit, Output, SandboxSpec


class Sandbox(Protocol):
    @property
    def id(self) -> str: ...

    def exec(
        self, argv: Sequence[str], *, timeout: float | None = None, cwd: str = ""
    ) -> AsyncGenerator[Output | Exit, None]:
        """Run `argv` in the sandbox, in `cwd` (a directory relative to the workspace; "" is the workspace itself);
        yields output chunks as they come, then exactly one Exit. Closing the generator early ends the command."""
        ...

    async def run(self, argv: Sequence[str], *, timeout: float | None = None, cwd: str = "") -> Completed:
        """Run `argv` and collect everything (for short commands)."""
        ...

    async def write_file(self, path: str, data: bytes) -> None: ...

    async def read_file(self, path: str) -> bytes: ...

    async def destroy(self) -> None:
        """End every process of the sandbox and delete its workspace. Idempotent."""
        ...


class SandboxBackend(Protocol):
    name: str  # what sessions record and show: "bubblewrap", "gvisor"

    async def create(self, spec: SandboxSpec) -> Sandbox: ...

    async def reconcile(self, keep: set[str]) -> list[str]:
        """Destroy sandboxes this backend finds but the caller no longer knows; returns their ids."""
        ...
