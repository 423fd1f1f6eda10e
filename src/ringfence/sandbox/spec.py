"""What a sandbox is asked to be, and what running a command in it yields: values shared by every backend.

Owns: `SandboxSpec` (network mode, limits, environment), the output and exit events of a command, and the
sandbox errors. Knows nothing of bubblewrap, Kubernetes or microVMs: nothing here names a host path or a flag.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

NetworkMode = Literal["none", "proxy"]
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# Set by the sandbox itself; a caller may not override them.
RESERVED_ENV = frozenset({"PATH", "HOME", "TMPDIR", "LANG", "TERM", "USER", "LOGNAME", "SHELL"})


class SandboxError(Exception):
    """A sandbox could not be created, used or destroyed; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-sandbox limits (`None`: no limit of that kind). What a host can enforce is reported at start and by
    `ringfence doctor`."""

    memory_bytes: int | None = 2 * 2**30
    pids: int | None = 1024
    timeout_seconds: float | None = 600.0

    def __post_init__(self) -> None:
        if self.memory_bytes is not None and self.memory_bytes < 16 * 2**20:
            raise SandboxError(f"memory limit {self.memory_bytes} is below 16 MiB")
        if self.pids is not None and self.pids < 4:
            raise SandboxError(f"pids limit {self.pids} is below 4")
        if self.timeout_seconds is not None and self.timeout_seconds <= 0:
            raise SandboxError(f"timeout {self.timeout_seconds} must be positive")


@dataclass(frozen=True, slots=True)
class SandboxSpec:
    """A sandbox to create. `env` holds only what the caller adds to the sandbox's own minimal environment."""

    network: NetworkMode = "none"
    limits: Limits = field(default_factory=Limits)
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if self.network not in ("none", "proxy"):
            raise SandboxError(f"network mode {self.network!r} is not one of: none, proxy")
        for name, value in self.env.items():
            if not _ENV_NAME.match(name):
                raise SandboxError(f"environment variable name {name!r} is not a valid name")
            if name in RESERVED_ENV:
                raise SandboxError(f"environment variable {name} is set by the sandbox itself")
            if "\x00" in value:
                raise SandboxError(f"environment variable {name} holds a NUL byte")
        object.__setattr__(self, "env", MappingProxyType(dict(self.env)))


@dataclass(frozen=True, slots=True)
class Output:
    """A chunk of a command's output, as it arrived."""

    stream: Literal["stdout", "stderr"]
    data: bytes


@dataclass(frozen=True, slots=True)
class Exit:
    """How a command ended: its exit code (negative: killed by that signal), and whether the timeout killed it."""

    code: int
    timed_out: bool = False


@dataclass(frozen=True, slots=True)
class Completed:
    """A command's whole output and exit, collected."""

    stdout: bytes
    stderr: bytes
    exit: Exit

    @property
    def code(self) -> int:
        return self.exit.code
