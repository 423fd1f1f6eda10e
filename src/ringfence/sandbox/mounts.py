"""The bubblewrap command line for one command in one sandbox, as a pure function of a plan.

Owns: which host paths become visible (read-only system directories, the sandbox's own workspace, a private /tmp,
a minimal /dev, a fresh /proc), which namespaces are new, and the environment rebuilt from an explicit list.
Nothing of the host's home, /root, /etc secrets, data directory or other workspaces is ever bound.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from ringfence.sandbox.spec import SYSTEM_PATH, TOOLS_DIR

INSIDE_WORKSPACE = "/workspace"
INSIDE_UID = 1000
# Read-only from the host (or from a root filesystem directory): programs and their libraries, nothing else.
SYSTEM_DIRS = ("/usr", "/etc/alternatives", "/etc/ssl/certs", "/etc/ca-certificates")
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/nsswitch.conf", "/etc/localtime", "/etc/mime.types")
USR_LINKS = {"/bin": "usr/bin", "/sbin": "usr/sbin", "/lib": "usr/lib", "/lib64": "usr/lib64"}
BASE_ENV = {
    "PATH": SYSTEM_PATH,
    "HOME": INSIDE_WORKSPACE,
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    "USER": "agent",
    "LOGNAME": "agent",
    "SHELL": "/bin/sh",
}


@dataclass(frozen=True, slots=True)
class MountPlan:
    workspace: Path  # host path of this sandbox's workspace (its ancestors are traversable, see bubblewrap.py)
    env: Mapping[str, str]
    hostname: str
    root: Path = Path("/")  # where the read-only system directories come from
    seccomp_fd: int | None = None
    info_fd: int | None = None  # bwrap writes the sandbox child's pid here...
    block_fd: int | None = None  # ...and waits on this before running the payload (time to join its cgroups)
    cwd: str = ""  # where the command starts, relative to the workspace (checked by the backend)
    tools: Mapping[str, Path] = field(default_factory=dict)  # read-only at TOOLS_DIR/<name>
    path: str = SYSTEM_PATH


@cache
def system_mounts(root: Path) -> tuple[str, ...]:
    """The read-only system binds and /usr links that exist under `root` (computed once per root, not per
    command: it is on the sandbox start path)."""
    args: list[str] = []
    for directory in SYSTEM_DIRS:
        source = root / directory.lstrip("/")
        if source.exists():
            args += ["--ro-bind", str(source), directory]
    for file in SYSTEM_FILES:
        source = root / file.lstrip("/")
        if source.exists():
            args += ["--ro-bind", str(source), file]
    for link, target in USR_LINKS.items():
        if (root / "usr" / target.removeprefix("usr/")).exists():
            args += ["--symlink", target, link]
    return tuple(args)


def bwrap_argv(bwrap: str, plan: MountPlan, argv: Sequence[str]) -> list[str]:
    """The full argument list (never a shell string)."""
    return [bwrap, *bwrap_options(plan), "--", *argv]


def options_file(plan: MountPlan) -> bytes:
    """The options as bwrap's `--args FD` reads them (NUL-terminated). Given this way, they never appear in the
    command line of bwrap's processes, which the sandbox can read in /proc/1/cmdline: host paths (the workspace's,
    the root filesystem's) and the environment's values stay outside."""
    return b"".join(option.encode() + b"\0" for option in bwrap_options(plan))


def bwrap_options(plan: MountPlan) -> list[str]:
    """Every option of one bwrap invocation, in order."""
    args = [
        "--unshare-all",
        "--unshare-user",
        "--uid",
        str(INSIDE_UID),
        "--gid",
        str(INSIDE_UID),
        "--disable-userns",
        "--hostname",
        plan.hostname,
        "--die-with-parent",
        "--new-session",
        "--clearenv",
    ]
    args += system_mounts(plan.root)
    args += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
        "--bind",
        str(plan.workspace),
        INSIDE_WORKSPACE,
    ]
    for name, source in sorted(plan.tools.items()):
        args += ["--ro-bind", str(source), f"{TOOLS_DIR}/{name}"]
    args += [
        "--chdir",
        f"{INSIDE_WORKSPACE}/{plan.cwd}" if plan.cwd else INSIDE_WORKSPACE,
    ]
    for name, value in {**BASE_ENV, "PATH": plan.path, **plan.env}.items():
        args += ["--setenv", name, value]
    if plan.seccomp_fd is not None:
        args += ["--seccomp", str(plan.seccomp_fd)]
    if plan.info_fd is not None and plan.block_fd is not None:
        args += ["--info-fd", str(plan.info_fd), "--block-fd", str(plan.block_fd)]
    return args
