"""A fake `SandboxBackend` for tests of the layers above that need the interface, not isolation.

Owns: `FakeBackend` (name "fake"; records every spec it was given and every sandbox it made) and `FakeSandbox`
(an in-memory workspace; each command answered by the test's `handler(argv, cwd, files)`, which returns a
`Completed` and may change `files`). It keeps the interface's contract: exactly one Exit after the output, paths
relative to the workspace (absolute, empty or `..` refused), a destroyed sandbox refusing work, destroy idempotent,
reconcile destroying what the caller no longer knows. It isolates nothing: every guarantee of a real backend is the
conformance suite's (ringfence.testing.conformance), which a fake cannot pass and is not run against.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from ringfence.sandbox import running
from ringfence.sandbox.spec import Completed, Exit, Output, SandboxError, SandboxSpec, check_command
from ringfence.store.ids import new_id

Handler = Callable[[Sequence[str], str, dict[str, bytes]], Completed]


def not_found(argv: Sequence[str], cwd: str, files: dict[str, bytes]) -> Completed:
    """The default handler: every command is unknown, as a shell would say it."""
    return Completed(b"", f"fake: {argv[0]}: not found\n".encode(), Exit(127))


def _relative(path: str) -> str:
    parts = PurePosixPath(path).parts
    if not path or path.startswith("/") or ".." in parts or "\x00" in path:
        raise SandboxError(f"{path!r} is not a path inside the workspace")
    return str(PurePosixPath(*parts))


@dataclass
class FakeSandbox:
    backend: FakeBackend
    spec: SandboxSpec
    id: str = field(default_factory=lambda: new_id("sbx"))
    files: dict[str, bytes] = field(default_factory=dict)
    commands: list[tuple[tuple[str, ...], str]] = field(default_factory=list)
    destroyed: bool = False

    def _alive(self) -> None:
        if self.destroyed:
            raise SandboxError(f"sandbox {self.id} was destroyed")

    async def exec(
        self, argv: Sequence[str], *, timeout: float | None = None, cwd: str = ""
    ) -> AsyncGenerator[Output | Exit, None]:
        check_command(argv, cwd)
        self._alive()
        self.commands.append((tuple(argv), cwd))
        done = self.backend.handler(argv, cwd, self.files)
        if done.stdout:
            yield Output("stdout", done.stdout)
        if done.stderr:
            yield Output("stderr", done.stderr)
        yield done.exit

    async def run(self, argv: Sequence[str], *, timeout: float | None = None, cwd: str = "") -> Completed:
        return await running.collect(self.exec(argv, timeout=timeout, cwd=cwd))

    async def write_file(self, path: str, data: bytes) -> None:
        self._alive()
        self.files[_relative(path)] = bytes(data)

    async def read_file(self, path: str) -> bytes:
        self._alive()
        try:
            return self.files[_relative(path)]
        except KeyError:
            raise FileNotFoundError(path) from None

    async def destroy(self) -> None:
        self.destroyed = True
        self.files.clear()


@dataclass
class FakeBackend:
    handler: Handler = not_found
    name: str = "fake"
    made: list[FakeSandbox] = field(default_factory=list)
    refuse: str | None = None  # when set, create raises SandboxError with this reason

    async def create(self, spec: SandboxSpec) -> FakeSandbox:
        if self.refuse is not None:
            raise SandboxError(self.refuse)
        sandbox = FakeSandbox(self, spec)
        self.made.append(sandbox)
        return sandbox

    async def reconcile(self, keep: set[str]) -> list[str]:
        removed = [s.id for s in self.made if not s.destroyed and s.id not in keep]
        for sandbox in self.made:
            if sandbox.id in removed:
                await sandbox.destroy()
        return removed

    @property
    def live(self) -> list[FakeSandbox]:
        return [s for s in self.made if not s.destroyed]
