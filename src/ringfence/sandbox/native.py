"""The C programs a gVisor sandbox runs inside (the sources in ./native), built on this host with its C compiler.

Each build lands in `into/<digest>/`, the digest naming the sources, the flags and the compiler, so a directory
there is complete and right once it exists: a later backend on the same root (the next server, `ringfence doctor`)
takes it as it is, and a changed source builds anew beside it. A build is made in a private directory and renamed
into place whole, so a sandbox never binds a half-written program. No compiler: a clear error, never a fallback
(make installs Debian's gcc and libc6-dev).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ringfence.sandbox.spec import SandboxError

SOURCES = Path(__file__).with_name("native")
# what each program is built from, and how: the init and the launcher static (no dynamic loader runs before their
# limits are set, and one exec is their whole start), the compatibility library shared (preloaded into every program)
PROGRAMS = {
    "init": ("init.c", ["-static"]),
    "launch": ("launch.c", ["-static"]),
    "compat.so": ("compat.c", ["-shared", "-fPIC"]),
}
_FLAGS = ["-O2", "-Wall", "-Wextra", "-std=gnu11"]


@dataclass(frozen=True)
class Built:
    init: Path
    launch: Path
    compat: Path


def _compiler() -> str:
    found = shutil.which("cc") or shutil.which("gcc")
    if found is None:
        raise SandboxError(
            "the gVisor backend builds its launcher with a C compiler, and none was found (cc): "
            "make installs Debian's gcc and libc6-dev"
        )
    return found


def _digest(compiler: str) -> str:
    version = subprocess.run([compiler, "--version"], capture_output=True, check=False).stdout  # noqa: S603 (the host's cc)
    hashed = hashlib.sha256(version)
    for name, (source, flags) in sorted(PROGRAMS.items()):
        hashed.update(f"{name}\0{source}\0{' '.join(_FLAGS + flags)}\0".encode())
        hashed.update((SOURCES / source).read_bytes())
    return hashed.hexdigest()[:16]


def build(into: Path) -> Built:
    """The programs, built under `into` (made 0711 if absent), or taken from an earlier build of the same sources."""
    compiler = _compiler()
    into.mkdir(mode=0o711, parents=True, exist_ok=True)
    done = into / _digest(compiler)
    if not done.is_dir():
        work = Path(tempfile.mkdtemp(prefix=".build-", dir=into))
        try:
            for name, (source, flags) in PROGRAMS.items():
                made = subprocess.run(  # noqa: S603 (the host's cc, on this package's own sources)
                    [compiler, *_FLAGS, *flags, "-o", str(work / name), str(SOURCES / source)],
                    capture_output=True,
                    check=False,
                )
                if made.returncode != 0:
                    said = made.stderr.decode("utf-8", "replace")[-800:]
                    raise SandboxError(f"the gVisor backend's {name} did not build ({compiler}): {said}")
                os.chmod(work / name, 0o755)  # noqa: S103 (run or loaded by the agent's uid, whatever the umask)
            os.chmod(work, 0o755)  # noqa: S103 (bound read-only into sandboxes: nothing secret in it)
            with contextlib.suppress(OSError):  # another process made the same build first
                work.rename(done)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if not done.is_dir():
            raise SandboxError(f"the gVisor backend's programs could not be put in {done}")
    return Built(init=done / "init", launch=done / "launch", compat=done / "compat.so")
