"""What a sandbox is asked to be, and what running a command in it yields: values shared by every backend.

Owns: `SandboxSpec` (network mode, proxy routes, limits, environment), the output and exit events of a command,
and the sandbox errors. Knows nothing of bubblewrap, Kubernetes or microVMs: nothing here names a flag. What the
sandbox sees of its proxies is fixed for every backend: the egress proxy at 127.0.0.1:3128, the credential gateway
at 127.0.0.1:8080.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal

NetworkMode = Literal["none", "proxy"]
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
EGRESS_PORT = 3128
GATEWAY_PORT = 8080
BRIDGE_CONNECTIONS = 256  # per bridged port and sandbox: a flood of connects costs the host file descriptors
EGRESS_URL = f"http://127.0.0.1:{EGRESS_PORT}"
# What a sandbox in network mode 'proxy' is told, in both spellings tools read. The gateway is reached directly.
PROXY_ENV = {
    name: value
    for upper, value in {
        "HTTP_PROXY": EGRESS_URL,
        "HTTPS_PROXY": EGRESS_URL,
        "ALL_PROXY": EGRESS_URL,
        "NO_PROXY": "127.0.0.1,localhost,::1",
    }.items()
    for name in (upper, upper.lower())
}
# Set by the sandbox itself; a caller may not override them.
RESERVED_ENV = frozenset({"PATH", "HOME", "TMPDIR", "LANG", "TERM", "USER", "LOGNAME", "SHELL", *PROXY_ENV})
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
# Where a sandbox sees its tools (read-only host directories, e.g. installed agent CLIs): TOOLS_DIR/<name>, with
# TOOLS_DIR/<name>/bin on its PATH, for every backend.
TOOLS_DIR = "/opt/ringfence/tools"
_TOOL_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


class SandboxError(Exception):
    """A sandbox could not be created, used or destroyed; the message says which and why."""


_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_size(text: str) -> int:
    """`512M`, `2G`, `2GiB`, `65536K` or plain bytes."""
    value = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = value[-1:] if value[-1:] in _UNITS else ""
    number = value[: len(value) - len(unit)]
    if not number.isdigit():
        raise SandboxError(f"size {text!r} is not a number of bytes with an optional K, M, G or T")
    return int(number) * _UNITS[unit]


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-sandbox limits (`None`: no limit of that kind). What a host can enforce is reported at start and by
    `ringfence doctor`."""

    memory_bytes: int | None = 2 * 2**30
    pids: int | None = 1024
    timeout_seconds: float | None = 600.0
    workspace_bytes: int | None = 10 * 2**30  # disk, not RAM: sparse, only what is written takes space
    cpu_weight: int = 100  # relative CPU share under contention (cgroup v2 weight scale; 100 = an equal share)

    def __post_init__(self) -> None:
        if not 1 <= self.cpu_weight <= 10_000:
            raise SandboxError(f"cpu weight {self.cpu_weight} is not between 1 and 10000")
        if self.workspace_bytes is not None and self.workspace_bytes < 64 * 2**20:
            raise SandboxError(f"workspace size {self.workspace_bytes} is below 64 MiB")
        if self.memory_bytes is not None and self.memory_bytes < 16 * 2**20:
            raise SandboxError(f"memory limit {self.memory_bytes} is below 16 MiB")
        if self.pids is not None and self.pids < 4:
            raise SandboxError(f"pids limit {self.pids} is below 4")
        if self.timeout_seconds is not None and self.timeout_seconds <= 0:
            raise SandboxError(f"timeout {self.timeout_seconds} must be positive")


def check_command(argv: Sequence[str], cwd: str) -> None:
    """What every backend refuses before running anything: an empty command, a part that is not a string or holds a
    NUL byte, a directory outside the workspace (check_cwd)."""
    if not argv or not all(isinstance(a, str) and "\x00" not in a for a in argv):
        raise SandboxError("a command is a non-empty list of strings without NUL bytes")
    check_cwd(cwd)


def check_cwd(cwd: str) -> str:
    """A command's directory relative to the workspace: plain names separated by '/', never absolute, never '..'."""
    if cwd and (cwd.startswith("/") or any(part in ("", ".", "..") for part in cwd.split("/")) or "\x00" in cwd):
        raise SandboxError(f"a command's directory {cwd[:100]!r} must be a relative path inside the workspace")
    return cwd


def format_size(size: int) -> str:
    """Bytes as the shortest exact `512M`, `2G` form (`parse_size` reads it back)."""
    for unit in ("T", "G", "M", "K"):
        if size and size % _UNITS[unit] == 0:
            return f"{size // _UNITS[unit]}{unit}"
    return str(size)


@dataclass(frozen=True, slots=True)
class LimitRequest:
    """What an account's environment asks for. `None` asks for the operator's ceiling (never for "no limit": a
    tenant cannot lift a limit, SECURITY-CASES T1)."""

    memory_bytes: int | None = None
    pids: int | None = None
    timeout_seconds: float | None = None
    workspace_bytes: int | None = None
    cpu_weight: int | None = None


# Each limit with the name an environment's settings give it, and how its value reads to a person.
_LIMITS: tuple[tuple[str, str, object], ...] = (
    ("memory_bytes", "memory", format_size),
    ("pids", "pids", str),
    ("timeout_seconds", "timeout_seconds", lambda v: f"{v:g} s"),
    ("workspace_bytes", "workspace", format_size),
    ("cpu_weight", "cpu_weight", str),
)


def grant(request: LimitRequest, ceiling: Limits) -> Limits:
    """The limits a sandbox gets: what was asked, each at most the operator's ceiling. The one rule of T1, called
    where an environment is saved (so a bad one is refused when it is written) and where a session starts (so a
    ceiling lowered since is honoured). Above a ceiling is refused, naming the limit and the ceiling; never cut
    down silently, never lifted."""
    granted: dict[str, object] = {}
    for attr, name, show in _LIMITS:
        asked, most = getattr(request, attr), getattr(ceiling, attr)
        if asked is None:
            granted[attr] = most
            continue
        if most is not None and asked > most:
            assert callable(show)
            raise SandboxError(
                f"limits.{name}: {show(asked)} is above this server's ceiling of {show(most)} (the operator's "
                f"sandbox settings); ask for at most {show(most)}, or leave it out to get the ceiling"
            )
        granted[attr] = asked
    return Limits(**granted)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class ProxyRoutes:
    """Where a session's proxy traffic arrives on the host: one Unix socket per service, made for that session
    alone, so the socket a connection arrives on is the session's identity."""

    egress: Path
    gateway: Path | None = None

    def by_port(self) -> dict[int, Path]:
        routes = {EGRESS_PORT: self.egress}
        if self.gateway is not None:
            routes[GATEWAY_PORT] = self.gateway
        return routes


@dataclass(frozen=True, slots=True)
class SandboxSpec:
    """A sandbox to create. `env` holds only what the caller adds to the sandbox's own minimal environment.
    Network mode 'none' leaves only loopback; 'proxy' adds the bridged proxies of `proxies`, and nothing else."""

    network: NetworkMode = "none"
    limits: Limits = field(default_factory=Limits)
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    proxies: ProxyRoutes | None = None
    tools: Mapping[str, Path] = field(default_factory=lambda: MappingProxyType({}))  # name -> host dir, read-only

    def __post_init__(self) -> None:
        if self.network not in ("none", "proxy"):
            raise SandboxError(f"network mode {self.network!r} is not one of: none, proxy")
        if self.network == "proxy" and self.proxies is None:
            raise SandboxError("network mode 'proxy' needs the session's proxy sockets (at least the egress one)")
        if self.network == "none" and self.proxies is not None:
            raise SandboxError("proxy sockets were given but the network mode is 'none'")
        for name, value in self.env.items():
            if not _ENV_NAME.match(name):
                raise SandboxError(f"environment variable name {name!r} is not a valid name")
            if name in RESERVED_ENV:
                raise SandboxError(f"environment variable {name} is set by the sandbox itself")
            if "\x00" in value:
                raise SandboxError(f"environment variable {name} holds a NUL byte")
        object.__setattr__(self, "env", MappingProxyType(dict(self.env)))
        for name, path in self.tools.items():
            if not _TOOL_NAME.match(name):
                raise SandboxError(f"tool name {name!r}: use 1-40 lowercase letters, digits, '-' or '_'")
            if not Path(path).is_absolute() or not Path(path).is_dir():
                raise SandboxError(f"tool {name}: {path} is not a directory given by its absolute path")
        object.__setattr__(self, "tools", MappingProxyType({n: Path(p) for n, p in self.tools.items()}))

    @property
    def path(self) -> str:
        """The sandbox's PATH: each tool's bin first, then the system's."""
        return ":".join([*(f"{TOOLS_DIR}/{name}/bin" for name in sorted(self.tools)), SYSTEM_PATH])

    @property
    def full_env(self) -> Mapping[str, str]:
        """The caller's variables plus, in proxy mode, where the proxies are."""
        return {**self.env, **PROXY_ENV} if self.network == "proxy" else self.env


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
